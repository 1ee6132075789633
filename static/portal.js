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
