// The console's progressive enhancements; every page works without them.
// "Copy" buttons: <button data-copy="ID" hidden> copies the value (or text) of the element with that id.
// "Select all": <input type="checkbox" data-select-all="NAME"> ticks or clears every checkbox named NAME in
// its form, and shows a mixed state when only some are ticked.
(function () {
  "use strict";

  function textOf(target) {
    return "value" in target ? target.value : target.textContent.trim();
  }

  function copyWithSelection(target) {
    // Fallback where the Clipboard API is missing: select the field and use the legacy command.
    if (typeof target.select !== "function") {
      return false;
    }
    target.focus();
    target.select();
    try {
      return document.execCommand("copy");
    } catch (err) {
      return false;
    }
  }

  function announce(button, message) {
    var status = document.getElementById(button.getAttribute("aria-describedby") || "");
    if (status) {
      status.textContent = message;
    }
    button.setAttribute("data-copied", message === button.getAttribute("data-done") ? "true" : "false");
  }

  function setUpCopy(button) {
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (!target) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      var text = textOf(target);
      var done = button.getAttribute("data-done") || "Copied";
      var failed = button.getAttribute("data-failed") || "Copy failed; select the text and copy it yourself";
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () {
          announce(button, done);
        }, function () {
          announce(button, copyWithSelection(target) ? done : failed);
        });
      } else {
        announce(button, copyWithSelection(target) ? done : failed);
      }
    });
  }

  function setUpSelectAll(box) {
    var form = box.form;
    var name = box.getAttribute("data-select-all");
    if (!form || !name) {
      return;
    }
    function rows() {
      return Array.prototype.filter.call(form.elements, function (el) {
        return el.type === "checkbox" && el.name === name;
      });
    }
    function reflect() {
      var all = rows();
      var ticked = all.filter(function (el) { return el.checked; }).length;
      box.checked = all.length > 0 && ticked === all.length;
      box.indeterminate = ticked > 0 && ticked < all.length;
    }
    box.hidden = false;
    var label = document.querySelector('label[for="' + box.id + '"]');
    if (label) {
      label.hidden = false;
    }
    box.addEventListener("change", function () {
      rows().forEach(function (el) { el.checked = box.checked; });
      box.indeterminate = false;
    });
    form.addEventListener("change", function (event) {
      if (event.target !== box && event.target.name === name) {
        reflect();
      }
    });
    reflect();
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("button[data-copy]"), setUpCopy);
    Array.prototype.forEach.call(document.querySelectorAll("input[data-select-all]"), setUpSelectAll);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
