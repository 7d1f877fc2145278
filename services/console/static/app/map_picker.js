// The point picker of templates/partials/map_picker.html: a small map of the city's grids; a click fills the
// enclosing form's lat/lon inputs and its grid/community/street/district selects (or inputs) with the grid
// clicked and the grid's ancestors (the GeoJSON's `parent` links).
(function () {
  "use strict";
  var MAP = "cityops-picker-grids";

  function inside(point, ring) {  // ray casting: works for any simple polygon, not only the generated boxes
    var x = point[0], y = point[1], hit = false;
    for (var i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      var xi = ring[i][0], yi = ring[i][1], xj = ring[j][0], yj = ring[j][1];
      if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) { hit = !hit; }
    }
    return hit;
  }

  function chainOf(id, byId) {
    var out = {};
    while (id && byId[id]) { out[byId[id].level] = id; id = byId[id].parent; }
    return out;
  }

  function setField(form, name, value) {
    var field = form.querySelector("[name='" + name + "']");
    if (!field) { return; }
    if (field.tagName === "SELECT" && !Array.prototype.some.call(field.options, function (o) { return o.value === value; })) {
      var option = document.createElement("option");
      option.value = value; option.textContent = value;
      field.appendChild(option);
    }
    field.value = value;
    field.dispatchEvent(new Event("change", { bubbles: true }));
  }

  function start(el) {
    var form = el.closest("form") || document;
    var fields = JSON.parse(el.getAttribute("data-fields") || "{}");
    var name = function (key) { return fields[key] || key; };
    fetch(el.getAttribute("data-geojson"), { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (geo) {
      var byId = {}, grids = [];
      geo.features.forEach(function (f) {
        byId[f.properties.id] = f.properties;
        if (f.properties.level === "grid") { grids.push(f); }
      });
      window.echarts.registerMap(MAP, { type: "FeatureCollection", features: grids });
      var chart = window.echarts.init(el);
      var english = document.documentElement.lang === "en";
      chart.setOption({
        series: [{ type: "map", map: MAP, nameProperty: "id", selectedMode: "single", roam: false,
                   // names only under the pointer: sixteen labels do not fit a phone-sized map
                   label: { show: false, fontSize: 10, formatter: function (p) {
                     var a = byId[p.name]; return a ? (english ? a.name_en : a.name) : p.name; } },
                   itemStyle: { areaColor: "#eef3f8", borderColor: "#8aa" },
                   emphasis: { itemStyle: { areaColor: "#cde" }, label: { show: true } },
                   select: { itemStyle: { areaColor: "#fdd835" }, label: { show: true } } }]
      });
      chart.getZr().on("click", function (e) {
        var point = chart.convertFromPixel({ seriesIndex: 0 }, [e.offsetX, e.offsetY]);
        if (!point) { return; }
        var hit = grids.filter(function (f) { return inside(point, f.geometry.coordinates[0]); })[0];
        if (!hit) { return; }
        var chain = chainOf(hit.properties.id, byId);
        setField(form, name("lon"), point[0].toFixed(6));
        setField(form, name("lat"), point[1].toFixed(6));
        ["district", "street", "community", "grid"].forEach(function (level) {
          if (chain[level]) { setField(form, name(level), chain[level]); }
        });
        chart.dispatchAction({ type: "select", seriesIndex: 0, name: hit.properties.id });
        el.setAttribute("data-picked", hit.properties.id);
      });
      el.setAttribute("data-ready", "true");
    });
  }

  function startAll(root, tries) {
    if (!window.echarts) {  // scripts htmx swaps in load in any order: wait a little for ECharts
      if ((tries || 0) < 50) { setTimeout(function () { startAll(root, (tries || 0) + 1); }, 100); }
      return;
    }
    root.querySelectorAll("[data-map-picker]:not([data-ready])").forEach(start);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { startAll(document); });
  } else {
    startAll(document);  // loaded after the page (a form swapped in by htmx)
  }
  document.addEventListener("htmx:afterSettle", function (e) { startAll(e.target); });
})();
