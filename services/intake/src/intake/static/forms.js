// Progressive enhancement of the forms: post JSON with fetch, show the outcome
// and each field's error without a reload. Without JavaScript the forms post
// as plain HTML forms and the server answers with the same page.
(function () {
  "use strict";

  function setPath(target, path, value) {
    var keys = path.split(".");
    for (var i = 0; i < keys.length - 1; i++) {
      target = target[keys[i]] = target[keys[i]] || {};
    }
    if (value !== undefined) target[keys[keys.length - 1]] = value;
  }

  function formBody(form) {
    var body = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.disabled) return;
      if (el.name === "services") {
        body.services = body.services || [];
        if (el.checked) body.services.push(el.value);
      } else if (el.type === "checkbox") {
        setPath(body, el.name, el.checked);
      } else {
        // Empty inputs are "not given", but their section still exists.
        setPath(body, el.name, el.value === "" ? undefined : el.value);
      }
    });
    return body;
  }

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function clearErrors(form) {
    form.querySelectorAll("[data-error-for]").forEach(function (p) { p.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
  }

  function errorSlot(form, field) {
    // "services.0" belongs to "services"; "account" (a missing section) to its first field.
    var name = field;
    while (name) {
      var slot = form.querySelector('[data-error-for="' + name + '"]');
      if (slot) return slot;
      name = name.indexOf(".") < 0 ? "" : name.slice(0, name.lastIndexOf("."));
    }
    return form.querySelector('[data-error-for^="' + field + '."]');
  }

  function showErrors(form, errors, translations) {
    var first = null;
    errors.forEach(function (error) {
      var slot = errorSlot(form, error.field);
      if (!slot) return;
      slot.textContent = translations[error.type] || error.message;
      var input = document.querySelector('[aria-describedby~="' + slot.id + '"]');
      if (input) {
        input.setAttribute("aria-invalid", "true");
        first = first || input;
      }
    });
    if (first) first.focus();
  }

  document.querySelectorAll("form[data-api]").forEach(function (form) {
    var outcome = document.getElementById("outcome");
    var button = form.querySelector("button[type=submit]");
    var translations = JSON.parse(document.getElementById("error-texts").textContent);

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      clearErrors(form);
      var body = formBody(form);
      var key = body.idempotency_key;
      delete body.idempotency_key;
      button.disabled = true;
      outcome.className = "notice";
      outcome.textContent = outcome.dataset.sending;
      fetch(form.dataset.api, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept": "application/json", "Idempotency-Key": key },
        body: JSON.stringify(body)
      }).then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          button.disabled = false;
          if (response.status === 202) {
            outcome.className = "notice success";
            outcome.innerHTML = "";
            var strong = document.createElement("strong");
            strong.textContent = outcome.dataset.success;
            outcome.appendChild(strong);
            var reference = data.application_id || data.enquiry_id;
            if (reference) {
              var meta = document.createElement("span");
              meta.className = "meta";
              meta.textContent = " " + outcome.dataset.reference.replace("{id}", reference);
              outcome.appendChild(meta);
            }
            form.hidden = true;
            return;
          }
          outcome.className = "notice failure";
          outcome.innerHTML = "";
          var title = document.createElement("strong");
          title.textContent = outcome.dataset.failure;
          outcome.appendChild(title);
          var detail = outcome.dataset["status" + response.status];
          if (data.type === "/problems/idempotency-key-reused") {
            // The key names what was sent first (before Back and an edit): this is a new submission.
            form.elements.idempotency_key.value = newKey();
            detail = outcome.dataset.reused;
          }
          if (detail) {
            outcome.appendChild(document.createElement("br"));
            outcome.appendChild(document.createTextNode(detail));
          }
          if (data.errors) showErrors(form, data.errors, translations);
        });
      }).catch(function () {
        button.disabled = false;
        outcome.className = "notice failure";
        outcome.textContent = outcome.dataset.failure;
      });
    });
  });
})();
