// wfcrawl dashboard: the little behaviour the pages need (no inline scripts: the CSP forbids them).
(function () {
  "use strict";
  // Buttons with data-confirm ask before their form is sent.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) {
      event.preventDefault();
    }
  });
  // A header checkbox with data-select-all="NAME" ticks every checkbox named NAME of its form.
  document.addEventListener("change", function (event) {
    var all = event.target;
    if (!all.hasAttribute || !all.hasAttribute("data-select-all") || !all.form) { return; }
    var boxes = all.form.querySelectorAll('input[type="checkbox"][name="' + all.getAttribute("data-select-all") + '"]');
    for (var i = 0; i < boxes.length; i++) { boxes[i].checked = all.checked; }
  });
  // A log line or item named in the address (#L12, #item-3) is highlighted once the page shows it.
  function mark() {
    var old = document.querySelectorAll(".target");
    for (var i = 0; i < old.length; i++) { old[i].classList.remove("target"); }
    if (location.hash.length > 1) {
      var el = document.getElementById(decodeURIComponent(location.hash.slice(1)));
      if (el) { el.classList.add("target"); }
    }
  }
  window.addEventListener("hashchange", mark);
  document.addEventListener("DOMContentLoaded", mark);
  document.addEventListener("htmx:afterSwap", mark);
})();
