// The supervisors' board: the grid map (ECharts registerMap over the city's GeoJSON, no tiles), coloured by
// open tickets or by on-time rate, switched by the buttons above it. Data: <script id="board-map-data">.
(function () {
  "use strict";
  var MAP = "cityops-grids";
  var chart = null, data = null, metric = "open";

  function option() {
    var values = data.grids.map(function (g) {
      return { name: g.id, value: metric === "open" ? g.open : g.on_time, label_name: g.name, open: g.open,
               overdue: g.overdue, on_time: g.on_time };
    });
    var numbers = values.map(function (v) { return v.value; }).filter(function (v) { return v !== null; });
    var max = metric === "open" ? Math.max(1, Math.max.apply(null, numbers.concat([0]))) : 100;
    return {
      tooltip: { trigger: "item", formatter: function (p) {
        var d = p.data || {};
        var onTime = d.on_time === null || d.on_time === undefined ? data.labels.no_data : d.on_time + "%";
        return (d.label_name || p.name) + "<br>" + data.labels.open + ": " + (d.open || 0) + " (" + (d.overdue || 0) +
          ")<br>" + data.labels.on_time + ": " + onTime;
      } },
      visualMap: { min: metric === "open" ? 0 : 0, max: max, left: "left", bottom: 0, calculable: true,
                   text: [metric === "open" ? data.labels.open : data.labels.on_time, ""],
                   inRange: { color: metric === "open" ? ["#e8f5e9", "#fdd835", "#e53935"] : ["#e53935", "#fdd835", "#43a047"] } },
      series: [{ type: "map", map: MAP, nameProperty: "id", roam: true, data: values, selectedMode: false,
                 label: { show: true, fontSize: 9, formatter: function (p) { return (p.data && p.data.label_name) || p.name; } } }]
    };
  }

  function draw() { if (chart && data) { chart.setOption(option(), true); } }

  function start() {
    var el = document.getElementById("board-map");
    var source = document.getElementById("board-map-data");
    if (!el || !source || !window.echarts) { return; }
    data = JSON.parse(source.textContent);
    fetch(data.geojson, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (geo) {
      var grids = { type: "FeatureCollection", features: geo.features.filter(function (f) {
        return f.properties.level === "grid"; }) };
      window.echarts.registerMap(MAP, grids);
      chart = window.echarts.init(el);
      draw();
      el.setAttribute("data-ready", "true");
    });
    document.querySelectorAll("[data-map-metric]").forEach(function (button) {
      button.addEventListener("click", function () {
        metric = button.getAttribute("data-map-metric");
        document.querySelectorAll("[data-map-metric]").forEach(function (b) { b.classList.toggle("on", b === button); });
        el.setAttribute("data-metric", metric);
        draw();
      });
    });
    window.addEventListener("resize", function () { if (chart) { chart.resize(); } });
  }
  document.addEventListener("DOMContentLoaded", start);
})();
