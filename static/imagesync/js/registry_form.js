/* Registry form (console and admin): show only the settings of the chosen kind. Without this
   script every kind's fields show, and the form ignores those of the other kinds on save. No
   inline script: the Content Security Policy forbids it. */
(function () {
  "use strict";

  function rowOf(input) {
    return input.closest(".field, .form-row") || input;
  }

  function showKind(form) {
    var kind = form.querySelector("select[name=kind]").value;
    form.querySelectorAll("[data-registry-kind]").forEach(function (input) {
      rowOf(input).style.display = input.getAttribute("data-registry-kind") === kind ? "" : "none";
    });
  }

  function init() {
    document.querySelectorAll("form").forEach(function (form) {
      if (!form.querySelector("select[name=kind]") || !form.querySelector("[data-registry-kind]")) {
        return;
      }
      showKind(form);
      form.addEventListener("change", function (event) {
        if (event.target.name === "kind") { showKind(form); }
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
