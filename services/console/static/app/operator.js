// The operator's desk: a suggestion chip picks the category; the area selects cascade district → street →
// community → grid (each option names its parent in data-parent). Delegated on document, so a form htmx swapped in
// works as the first one did.
(function () {
  "use strict";
  var LEVELS = ["district", "street", "community", "grid"];

  document.addEventListener("click", function (e) {
    var chip = e.target.closest ? e.target.closest("button[data-category]") : null;
    if (!chip) { return; }
    var select = document.getElementById("category");
    if (select) {
      select.value = chip.getAttribute("data-category");
      document.querySelectorAll("button[data-category]").forEach(function (b) { b.classList.toggle("chosen", b === chip); });
    }
  });

  function selectOf(level) { return document.getElementById("loc-" + level); }

  function filterBelow(level) {
    var i = LEVELS.indexOf(level);
    if (i < 0 || i === LEVELS.length - 1) { return; }
    var parent = selectOf(level).value;
    var child = selectOf(LEVELS[i + 1]);
    if (!child) { return; }
    var keep = false;
    Array.prototype.forEach.call(child.options, function (o) {
      if (!o.value) { return; }
      var shown = !parent || o.getAttribute("data-parent") === parent;
      o.hidden = !shown;
      o.disabled = !shown;
      if (shown && o.selected) { keep = true; }
    });
    if (!keep) { child.value = ""; }
    filterBelow(LEVELS[i + 1]);
  }

  // Choosing a grid (or a street...) first fills in the areas above it.
  function fillAbove(level) {
    var i = LEVELS.indexOf(level);
    var chosen = selectOf(level).selectedOptions[0];
    if (i <= 0 || !chosen || !chosen.value) { return; }
    var up = selectOf(LEVELS[i - 1]);
    var parent = chosen.getAttribute("data-parent");
    if (up && parent && up.value !== parent) {
      up.value = parent;
      fillAbove(LEVELS[i - 1]);
    }
  }

  document.addEventListener("change", function (e) {
    var level = e.target.getAttribute && e.target.getAttribute("data-level");
    if (!level) { return; }
    fillAbove(level);
    filterBelow(level);
  });
})();
