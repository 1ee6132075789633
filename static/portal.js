// CertHub portal: the one script. Live request status over Server-Sent Events, and a
// confirmation before irreversible forms. No inline script anywhere (CSP script-src 'self').
(function () {
  "use strict";

  // What a form had typed, kept in this tab while it is sent: when the session had expired,
  // the login brings the person back to the page and the form is filled in again. Never a
  // password, a file, or the hidden fields (the CSRF token among them).
  var DRAFT = "certhub-draft";
  var keepable = function (field) {
    return field.name && !field.disabled &&
      ["password", "file", "hidden", "submit", "button"].indexOf(field.type) < 0;
  };
  var saveDraft = function (form) {
    var action = form.getAttribute("action") || "";
    if ((form.getAttribute("method") || "").toLowerCase() !== "post" ||
        action === "/entrar" || action === "/sair" || form.querySelector("input[type=file]")) {
      return;
    }
    var fields = [];
    Array.prototype.forEach.call(form.elements, function (f) {
      if (keepable(f)) {
        fields.push({ name: f.name, value: f.value, checked: f.checked });
      }
    });
    try {
      window.sessionStorage.setItem(DRAFT, JSON.stringify({
        action: action,
        page: window.location.pathname + window.location.search,
        fields: fields,
        bounced: false
      }));
    } catch (err) {
      // No storage (private mode): nothing to keep.
    }
  };
  var restoreDraft = function () {
    var draft;
    try {
      draft = JSON.parse(window.sessionStorage.getItem(DRAFT) || "null");
    } catch (err) {
      return;
    }
    if (!draft) {
      return;
    }
    if (window.location.pathname === "/entrar") {
      // A form was sent and the login came instead: the session had ended. Keep the draft
      // for the page the login returns to (the server checks that it is one of its pages).
      draft.bounced = true;
      window.sessionStorage.setItem(DRAFT, JSON.stringify(draft));
      var login = document.querySelector("form[action='/entrar']");
      if (login && !login.querySelector("input[name=volta]") && draft.page) {
        var volta = document.createElement("input");
        volta.type = "hidden";
        volta.name = "volta";
        volta.value = draft.page;
        login.appendChild(volta);
        var said = document.createElement("p");
        said.className = "notice";
        said.setAttribute("role", "status");
        said.textContent = "Sua sessão terminou. Entre de novo para voltar à página em que estava.";
        login.parentNode.insertBefore(said, login);
      }
      return;
    }
    window.sessionStorage.removeItem(DRAFT);
    var form = draft.bounced && Array.prototype.find.call(document.forms, function (f) {
      return f.getAttribute("action") === draft.action;
    });
    if (!form) {
      return;
    }
    draft.fields.forEach(function (saved) {
      Array.prototype.forEach.call(form.elements, function (f) {
        if (f.name !== saved.name || !keepable(f)) {
          return;
        }
        if (f.type === "checkbox" || f.type === "radio") {
          f.checked = saved.checked;
        } else {
          f.value = saved.value;
        }
      });
    });
    var note = document.createElement("p");
    note.className = "notice";
    note.setAttribute("role", "status");
    note.setAttribute("data-restored", "");
    note.textContent = "Sua sessão tinha terminado. O que você digitou foi mantido: confira e envie de novo.";
    form.parentNode.insertBefore(note, form);
  };
  restoreDraft();

  document.addEventListener("submit", function (e) {
    var message = e.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      e.preventDefault();
      return;
    }
    saveDraft(e.target);
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
  // The session ended (logout, expiry, deactivation): stop, and say why nothing updates.
  source.addEventListener("ended", function () {
    source.close();
    var note = document.querySelector(".live-note");
    if (note) {
      note.textContent = "Sua sessão terminou: entre de novo para ver a situação atualizada.";
      note.classList.add("ended");
    }
  });
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
