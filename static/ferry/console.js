// Ferry console: small progressive enhancements. Everything works without it except copy buttons and the
// live canary label; htmx (served from the django-htmx package) does the fragment swaps and polling.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // Confirm before an action: <form data-confirm="..."> or data-confirm-template with {field} placeholders.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = form.getAttribute("data-confirm");
    var template = form.getAttribute("data-confirm-template");
    if (template) {
      message = template.replace(/\{(\w+)\}/g, function (_, name) {
        var field = form.elements[name];
        return field ? field.value : "";
      });
    }
    if (message && !window.confirm(message)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // Copy buttons: data-copy="text" or data-copy-from="element id".
  function copyText(text, button) {
    function done() {
      var label = button.textContent;
      button.textContent = "Copied";
      button.setAttribute("aria-live", "polite");
      setTimeout(function () { button.textContent = label; }, 1500);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
    } else {
      fallback(text);
      done();
    }
  }
  function fallback(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "absolute";
    area.style.left = "-9999px";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* nothing more to try */ }
    document.body.removeChild(area);
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy], [data-copy-from]");
    if (!button) return;
    var text = button.getAttribute("data-copy");
    if (text === null) {
      var source = document.getElementById(button.getAttribute("data-copy-from"));
      text = source ? (source.value !== undefined ? source.value : source.textContent) : "";
    }
    copyText(text, button);
  });

  // The canary slider shows its value as it moves.
  document.addEventListener("input", function (event) {
    if (event.target.id === "canary-percent") {
      var output = document.getElementById("canary-output");
      if (output) output.textContent = event.target.value + " %";
    }
  });

  // Selects that submit their form at once (the project switcher).
  document.addEventListener("change", function (event) {
    var form = event.target.closest("form[data-autosubmit]");
    if (form && event.target.tagName === "SELECT") form.requestSubmit ? form.requestSubmit() : form.submit();
  });
})();

// The invoke tab's chat playground: the conversation is posted to the console, which relays it to the service
// through the gateway (the service token stays on the server); the answer's server-sent events are read from
// the response body as they arrive and each token is appended at once.
(function () {
  "use strict";
  var running = null;  // the AbortController of the answer being streamed

  function item(log, role, text) {
    var entry = document.createElement("li");
    entry.className = "chat-" + role;
    entry.setAttribute("data-role", role);
    var who = document.createElement("span");
    who.className = "chat-who";
    who.textContent = role === "user" ? "You" : "Assistant";
    var body = document.createElement("div");
    body.className = "chat-text";
    body.textContent = text;
    entry.appendChild(who);
    entry.appendChild(body);
    log.appendChild(entry);
    return body;
  }

  function conversation(log, system) {
    var messages = system ? [{role: "system", content: system}] : [];
    log.querySelectorAll("li[data-role]").forEach(function (entry) {
      messages.push({role: entry.getAttribute("data-role"), content: entry.querySelector(".chat-text").textContent});
    });
    return messages;
  }

  // One server-sent event: the text it adds, or an error, or the end.
  function readEvent(block, out, state) {
    var kind = "message", data = [];
    block.split(/\r?\n/).forEach(function (line) {
      if (line.indexOf("event:") === 0) kind = line.slice(6).trim();
      else if (line.indexOf("data:") === 0) data.push(line.slice(5).replace(/^ /, ""));
    });
    if (!data.length) return;
    var text = data.join("\n");
    if (text === "[DONE]") { state.done = true; return; }
    var event;
    try { event = JSON.parse(text); } catch (e) { out.textContent += text; return; }
    if (kind === "error" || event.error) {
      state.error = (event.error && event.error.message) || event.message || text;
      return;
    }
    var choice = event.choices && event.choices[0];
    var piece = choice && (choice.delta ? choice.delta.content : choice.text);
    if (piece) {
      out.textContent += piece;
      state.chunks += 1;
    }
  }

  function stream(response, out, state) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (step) {
        if (step.done) return;
        buffer += decoder.decode(step.value, {stream: true});
        var blocks = buffer.split(/\r?\n\r?\n/);
        buffer = blocks.pop();
        blocks.forEach(function (block) { readEvent(block, out, state); });
        return state.done ? reader.cancel() : pump();
      });
    }
    return pump();
  }

  function send(form) {
    var panel = form.closest("[data-chat-url]");
    var log = panel.querySelector("#chat-log");
    var input = form.querySelector("#chat-message");
    var status = panel.querySelector("#chat-status");
    var stop = form.querySelector("#chat-stop");
    var sendButton = form.querySelector("#chat-send");
    var text = input.value.trim();
    if (!text || running) return;
    item(log, "user", text);
    input.value = "";
    var messages = conversation(log, form.querySelector("#chat-system").value.trim());
    var out = item(log, "assistant", "");
    var entry = out.parentNode;
    entry.setAttribute("aria-busy", "true");
    var body = {messages: messages};
    var maxTokens = parseInt(form.querySelector("#chat-max-tokens").value, 10);
    if (maxTokens > 0) body.max_tokens = maxTokens;
    var state = {chunks: 0, done: false, error: null};
    var began = performance.now();
    running = new AbortController();
    stop.hidden = false;
    sendButton.disabled = true;
    status.textContent = "Waiting for the first token…";
    fetch(panel.getAttribute("data-chat-url"), {
      method: "POST", credentials: "same-origin", signal: running.signal, body: JSON.stringify(body),
      headers: {"Content-Type": "application/json", "Accept": "text/event-stream",
                "X-CSRFToken": form.querySelector("[name=csrfmiddlewaretoken]").value}
    }).then(function (response) {
      if (!response.ok) {
        return response.json().catch(function () { return {}; }).then(function (answer) {
          state.error = (answer.error && answer.error.message) || ("HTTP " + response.status);
        });
      }
      status.textContent = "Streaming…";
      return stream(response, out, state);
    }).catch(function (error) {
      state.error = error.name === "AbortError" ? "stopped" : String(error);
    }).then(function () {
      running = null;
      stop.hidden = true;
      sendButton.disabled = false;
      entry.removeAttribute("aria-busy");
      var seconds = ((performance.now() - began) / 1000).toFixed(1);
      if (state.error && state.error !== "stopped") {
        entry.removeAttribute("data-role");  // a failed answer is not sent back as the assistant's turn
        entry.classList.add("chat-failed");
        status.textContent = "Failed: " + state.error;
      } else {
        status.textContent = (state.error ? "Stopped" : "Done") + ": " + state.chunks + " chunks in " + seconds + " s";
      }
      input.focus();
    });
  }

  document.addEventListener("submit", function (event) {
    if (event.target.id !== "chat-form") return;
    event.preventDefault();
    send(event.target);
  });
  document.addEventListener("click", function (event) {
    if (event.target.id === "chat-stop" && running) running.abort();
    if (event.target.id === "chat-clear") {
      if (running) running.abort();
      var log = document.getElementById("chat-log");
      if (log) log.textContent = "";
      var status = document.getElementById("chat-status");
      if (status) status.textContent = "";
    }
  });
})();
