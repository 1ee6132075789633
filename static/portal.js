// CertHub portal: the one script. Live request status over Server-Sent Events, and a
// confirmation before irreversible forms. No inline script anywhere (CSP script-src 'self').
(function () {
  "use strict";

  document.addEventListener("submit", function (e) {
    var message = e.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      e.preventDefault();
    }
  });

  // "Copiar" beside a command or a link: the clipboard API where the page is a secure
  // context, the selection and execCommand on a plain-HTTP LAN address.
  document.addEventListener("click", function (e) {
    var button = e.target.closest ? e.target.closest("button.copy") : null;
    if (!button) {
      return;
    }
    var code = button.parentNode.querySelector("pre.command");
    if (!code) {
      return;
    }
    var text = code.textContent;
    var done = function () {
      button.textContent = "Copiado";
      window.setTimeout(function () {
        button.textContent = "Copiar";
      }, 2000);
    };
    var fallback = function () {
      var range = document.createRange();
      range.selectNodeContents(code);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      try {
        if (document.execCommand("copy")) {
          done();
        }
      } catch (err) {
        // Selected: the person can press Ctrl+C.
      }
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, fallback);
    } else {
      fallback();
    }
  });

  var table = document.querySelector("table[data-live]");
  if (!table || !window.EventSource) {
    return;
  }
  var filter = table.getAttribute("data-filter") || "";
  var insert = table.getAttribute("data-insert") === "yes";
  var source = new EventSource(table.getAttribute("data-live"));
  source.addEventListener("job", function (e) {
    var data;
    try {
      data = JSON.parse(e.data);
    } catch (err) {
      return;
    }
    var template = document.createElement("template");
    template.innerHTML = data.row.trim();
    var row = template.content.firstElementChild;
    if (!row) {
      return;
    }
    var old = table.querySelector('tr[data-job="' + data.id + '"]');
    if (old) {
      old.replaceWith(row);
    } else if (insert && (filter === "" || filter === data.status)) {
      table.querySelector("tbody").prepend(row);
      var empty = document.querySelector("[data-empty]");
      if (empty) {
        empty.remove();
      }
    }
  });
})();
