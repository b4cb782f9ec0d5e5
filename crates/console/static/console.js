// NCY console: the little JavaScript the pages use. Every page works without it; with it,
// - an element with data-sse="<url>" subscribes to that Server-Sent Events URL and each message
//   replaces its content (the server renders and escapes the fragment);
//   an `end` event with data-sse-end="reload" reloads the page once (the job finished);
//   an `expired` event (the session ran out) reloads the page, which leads to the sign-in form;
// - a form with data-confirm="<question>" asks before it is sent; with data-confirm-field="<name>"
//   the question also shows what was typed in that field (e.g. the pattern about to be deleted);
// - live streams pause while the tab is hidden and resume when it is shown again.
"use strict";

(function () {
  var streams = [];

  function open(stream) {
    if (stream.source) {
      return;
    }
    var source = new EventSource(stream.url);
    source.onmessage = function (event) {
      stream.element.innerHTML = event.data;
    };
    source.addEventListener("end", function () {
      close(stream);
      stream.done = true;
      if (stream.element.getAttribute("data-sse-end") === "reload") {
        window.location.reload();
      }
    });
    source.addEventListener("expired", function () {
      close(stream);
      stream.done = true;
      window.location.reload();
    });
    stream.source = source;
  }

  function close(stream) {
    if (stream.source) {
      stream.source.close();
      stream.source = null;
    }
  }

  function onVisibility() {
    streams.forEach(function (stream) {
      if (stream.done) {
        return;
      }
      if (document.hidden) {
        close(stream);
      } else {
        open(stream);
      }
    });
  }

  function start() {
    document.querySelectorAll("[data-sse]").forEach(function (element) {
      var stream = { element: element, url: element.getAttribute("data-sse"), source: null, done: false };
      streams.push(stream);
      if (!document.hidden) {
        open(stream);
      }
    });
    document.addEventListener("visibilitychange", onVisibility);
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        var question = form.getAttribute("data-confirm");
        var field = form.getAttribute("data-confirm-field");
        if (field && form.elements[field]) {
          question += "\n\n" + form.elements[field].value;
        }
        if (!window.confirm(question)) {
          event.preventDefault();
        }
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
