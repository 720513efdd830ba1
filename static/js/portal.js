/* Progressive enhancement for the row menus (<details>/<summary>) and row selection.
   Without this script the menus still open and close and the forms still submit. */
(function () {
  "use strict";

  function items(menu) {
    return Array.prototype.slice.call(menu.querySelectorAll('[role="menuitem"]'));
  }

  function closeMenu(menu, returnFocus) {
    if (!menu.open) return;
    menu.open = false;
    if (returnFocus) menu.querySelector("summary").focus();
  }

  function closeOthers(except) {
    document.querySelectorAll("details[data-menu][open]").forEach(function (m) {
      if (m !== except) closeMenu(m, false);
    });
  }

  document.querySelectorAll("details[data-menu]").forEach(function (menu) {
    var summary = menu.querySelector("summary");
    summary.setAttribute("aria-expanded", menu.open ? "true" : "false");

    menu.addEventListener("toggle", function () {
      summary.setAttribute("aria-expanded", menu.open ? "true" : "false");
      if (menu.open) closeOthers(menu);
    });

    summary.addEventListener("keydown", function (event) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        event.stopPropagation();
        menu.open = true;
        var list = items(menu);
        if (list.length) (event.key === "ArrowDown" ? list[0] : list[list.length - 1]).focus();
      } else if (event.key === "Escape") {
        event.stopPropagation();
        closeMenu(menu, true);
      }
    });

    menu.addEventListener("keydown", function (event) {
      var list = items(menu);
      var index = list.indexOf(document.activeElement);
      if (index === -1) return;
      if (event.key === "ArrowDown") {
        event.preventDefault();
        list[(index + 1) % list.length].focus();
      } else if (event.key === "ArrowUp") {
        event.preventDefault();
        list[(index - 1 + list.length) % list.length].focus();
      } else if (event.key === "Home") {
        event.preventDefault();
        list[0].focus();
      } else if (event.key === "End") {
        event.preventDefault();
        list[list.length - 1].focus();
      } else if (event.key === "Escape") {
        event.preventDefault();
        closeMenu(menu, true);
      } else if (event.key === "Tab") {
        closeMenu(menu, false);
      }
    });

    menu.addEventListener("focusout", function (event) {
      if (event.relatedTarget && !menu.contains(event.relatedTarget)) closeMenu(menu, false);
    });
  });

  document.addEventListener("click", function (event) {
    document.querySelectorAll("details[data-menu][open]").forEach(function (m) {
      if (!m.contains(event.target)) closeMenu(m, false);
    });
  });

  // "Select all" only makes sense with a script; it stays hidden otherwise.
  var all = document.querySelector("[data-select-all]");
  if (all) {
    var boxes = document.querySelectorAll('input[type="checkbox"][name="numbers"]');
    all.hidden = boxes.length === 0;
    all.addEventListener("change", function () {
      boxes.forEach(function (box) { box.checked = all.checked; });
    });
  }

  var download = document.querySelector("[data-download-selected]");
  if (download) {
    download.form.addEventListener("submit", function (event) {
      var chosen = document.querySelectorAll('input[name="numbers"]:checked');
      if (chosen.length === 0) {
        event.preventDefault();
        window.alert("Select at least one invoice to download.");
      }
    });
  }
})();
