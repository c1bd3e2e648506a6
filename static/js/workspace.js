// The consultation workspace: Ctrl+Enter asks, quick questions fill the box, prompt tabs switch,
// and a citation [n] opens the passage it cites. Event delegation, so HTMX-swapped panels work too.
// When she pauses typing a question, its form is posted to the prefill URL: the local model reads her
// prompt up to the question's words (its guidance sources) before she asks.
(function () {
  "use strict";

  document.addEventListener("keydown", function (event) {
    var box = event.target;
    if (box.id === "id_question" && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      box.form.requestSubmit();
    }
    var tab = event.target.closest && event.target.closest('[role="tab"]');
    if (tab && (event.key === "ArrowRight" || event.key === "ArrowLeft")) {
      var tabs = Array.prototype.slice.call(tab.parentNode.querySelectorAll('[role="tab"]'));
      var next = tabs[(tabs.indexOf(tab) + (event.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
      select(next);
      next.focus();
    }
  });

  function select(tab) {
    tab.parentNode.querySelectorAll('[role="tab"]').forEach(function (other) {
      var chosen = other === tab;
      other.setAttribute("aria-selected", chosen ? "true" : "false");
      other.tabIndex = chosen ? 0 : -1;
      document.getElementById(other.getAttribute("aria-controls")).hidden = !chosen;
    });
  }

  var PAUSE_MS = 600;
  var pause = null;
  var lastSent = "";

  function readAheadSoon(form) {
    if (!form || !form.dataset.prefillUrl) {
      return;
    }
    clearTimeout(pause);
    pause = setTimeout(function () {
      var data = new FormData(form);
      var sent = new URLSearchParams(data).toString();
      if (sent === lastSent || !String(data.get("question") || "").trim()) {
        return;
      }
      lastSent = sent;
      fetch(form.dataset.prefillUrl, {method: "POST", body: data, credentials: "same-origin"}).catch(function () {
        lastSent = "";  // best effort: asking reads the prompt itself
      });
    }, PAUSE_MS);
  }

  document.addEventListener("submit", function () {
    clearTimeout(pause);  // asked: the question reads what is left itself
  });

  document.addEventListener("input", function (event) {
    if (event.target.closest && event.target.closest("#ask-form")) {
      readAheadSoon(event.target.form);
    }
  });
  document.addEventListener("change", function (event) {
    if (event.target.closest && event.target.closest("#ask-form")) {
      readAheadSoon(event.target.form);
    }
  });

  document.addEventListener("click", function (event) {
    var chip = event.target.closest(".chip[data-question]");
    if (chip) {
      var box = document.getElementById("id_question");
      box.value = chip.dataset.question;
      box.focus();
      readAheadSoon(box.form);
      return;
    }
    var tab = event.target.closest('.view-switch [role="tab"]');
    if (tab) {
      select(tab);
      return;
    }
    var cite = event.target.closest("a.cite[data-open]");
    if (cite) {
      var passage = document.getElementById(cite.dataset.open);
      if (passage) {
        event.preventDefault();
        passage.open = true;
        passage.scrollIntoView({block: "nearest"});
        passage.querySelector("summary").focus();
      }
    }
  });
})();
