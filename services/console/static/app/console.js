// The console's own script (no inline scripts: the pages' CSP forbids them).
// - The live dot shows whether the SSE stream (htmx-ext-sse on <body>) is open.
// - Charts: <div class="chart" data-chart="ID"></div> with <script type="application/json" id="ID">{ECharts option}</script>
//   is initialised when echarts is loaded on the page (pages add its script in {% block head %}).
(function () {
  "use strict";
  function liveDot(on) {
    var dot = document.getElementById("live-dot");
    if (dot) { dot.classList.toggle("on", on); }
  }
  document.addEventListener("htmx:sseOpen", function () { liveDot(true); });
  document.addEventListener("htmx:sseError", function () { liveDot(false); });

  function initCharts(root) {
    if (!window.echarts) { return; }
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      var source = document.getElementById(el.getAttribute("data-chart"));
      if (!source) { return; }
      var chart = window.echarts.getInstanceByDom(el) || window.echarts.init(el);
      chart.setOption(JSON.parse(source.textContent), true);
    });
  }
  window.cityopsConsole = { initCharts: initCharts };
  document.addEventListener("DOMContentLoaded", function () { initCharts(document); });
  document.addEventListener("htmx:afterSettle", function (e) { initCharts(e.target); });
  window.addEventListener("resize", function () {
    if (!window.echarts) { return; }
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var chart = window.echarts.getInstanceByDom(el);
      if (chart) { chart.resize(); }
    });
  });
})();
