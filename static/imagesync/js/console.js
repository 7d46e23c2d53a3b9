/* The console's few lines of behaviour. No inline script anywhere: the Content Security
   Policy forbids it, so everything is wired here by event delegation. */
(function () {
  "use strict";

  var panelHost = function () { return document.getElementById("slideout"); };
  var opener = null;

  function panelOpen() {
    var host = panelHost();
    return host && host.querySelector(".slideout");
  }

  function closePanel() {
    var host = panelHost();
    if (!host) { return; }
    host.innerHTML = "";
    document.body.classList.remove("panel-open");
    if (opener && document.contains(opener)) { opener.focus(); }
    opener = null;
  }

  function focusPanel() {
    var panel = panelOpen();
    if (!panel) { return; }
    document.body.classList.add("panel-open");
    var first = panel.querySelector("input:checked, input:not([type=hidden]), select, textarea, button, a[href]");
    (first || panel).focus();
    updateSelectedCount(panel);
  }

  function updateSelectedCount(root) {
    var picker = (root || document).querySelector("#repo-picker");
    if (!picker) { return; }
    var checked = picker.querySelectorAll("input[data-repo-checkbox]:checked").length;
    var hidden = picker.querySelectorAll("input[type=hidden][name=repositories]").length;
    var out = picker.querySelector("[data-selected-count]");
    if (out) { out.textContent = String(checked + hidden); }
    var all = picker.querySelector("[data-select-page]");
    var boxes = picker.querySelectorAll("input[data-repo-checkbox]");
    if (all) {
      all.checked = boxes.length > 0 && checked === boxes.length;
      all.indeterminate = checked > 0 && checked < boxes.length;
    }
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (elt && elt.hasAttribute && elt.hasAttribute("data-opens-panel")) { opener = elt; }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "slideout") {
      if (panelOpen()) { focusPanel(); } else { closePanel(); }
    }
    if (target && target.id === "repo-picker") { updateSelectedCount(document); }
  });

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && panelOpen()) {
      event.preventDefault();
      closePanel();
      return;
    }
    var input = event.target;
    if (event.key === "Enter" && input.closest && input.closest(".picker-filters") && input.tagName === "INPUT") {
      event.preventDefault();
      var button = input.closest(".picker-filters").querySelector("[data-picker-filter]");
      if (button) { button.click(); }
    }
  });

  document.addEventListener("click", function (event) {
    var closer = event.target.closest("[data-close-panel]");
    if (closer && panelHost() && panelHost().contains(closer)) {
      event.preventDefault();
      closePanel();
      return;
    }
    var copy = event.target.closest("[data-copy]");
    if (copy) {
      var text = copy.getAttribute("data-copy");
      var done = function () {
        copy.classList.add("copied");
        // The titles come from the page, in its language.
        var title = copy.getAttribute("title");
        copy.setAttribute("title", copy.getAttribute("data-copied-title") || "Copied");
        window.setTimeout(function () { copy.classList.remove("copied"); copy.setAttribute("title", title); }, 1500);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () {});
      } else {
        var area = document.createElement("textarea");
        area.value = text;
        area.setAttribute("readonly", "");
        area.className = "offscreen";
        document.body.appendChild(area);
        area.select();
        try { document.execCommand("copy"); done(); } catch (e) { /* nothing to do */ }
        document.body.removeChild(area);
      }
    }
  });

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches("select[data-autosubmit]")) {
      target.form.requestSubmit ? target.form.requestSubmit() : target.form.submit();
      return;
    }
    if (target.matches("[data-select-page]")) {
      var picker = target.closest("#repo-picker");
      picker.querySelectorAll("input[data-repo-checkbox]").forEach(function (box) { box.checked = target.checked; });
      updateSelectedCount(document);
      return;
    }
    if (target.matches("input[data-repo-checkbox]")) { updateSelectedCount(document); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.documentElement.classList.add("js");
    updateSelectedCount(document);
  });
})();
