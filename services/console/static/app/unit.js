// The unit inbox's countdowns: each <span class="countdown" data-left="SECONDS" data-running="1|0"> shows the time
// left the bridge computed on the working-day calendar, and counts it down between refreshes only while its clock
// runs (data-running: inside working hours for wd/wh clocks, not paused). A refresh (htmx swap) brings new values.
(function () {
  "use strict";
  var zh = (document.documentElement.lang || "").indexOf("zh") === 0;
  function text(seconds) {
    var sign = seconds < 0 ? "-" : "", rest = Math.abs(seconds);
    var hours = Math.floor(rest / 3600), minutes = Math.floor((rest % 3600) / 60);
    var mm = (minutes < 10 ? "0" : "") + minutes;
    return zh ? sign + hours + "小时" + mm + "分" : sign + hours + "h " + mm + "m";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll(".countdown[data-left]").forEach(function (el) {
      if (!el.dataset.seenAt) { el.dataset.seenAt = String(now); }
      if (el.dataset.running !== "1") { return; }
      var left = parseInt(el.dataset.left, 10) - Math.floor((now - parseInt(el.dataset.seenAt, 10)) / 1000);
      el.textContent = text(left);
      var clock = el.closest(".clock");
      if (clock) {
        clock.classList.toggle("overdue", left < 0);
        clock.classList.toggle("urgent", left >= 0 && left < 7200);
      }
    });
  }
  document.addEventListener("DOMContentLoaded", tick);
  setInterval(tick, 1000);
})();
