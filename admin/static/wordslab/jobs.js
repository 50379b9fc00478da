// Keeps job progress live: polls the status of each unfinished job shown ([data-job-id]),
// updates its bar, and reloads the page when a job ends or, on the jobs list
// ([data-jobs-summary-url]), when a newer job appears. No reload while rows are selected.
(function () {
  "use strict";
  var INTERVAL_MS = 1500;
  var ACTIVE = ["queued", "running"];

  function getJson(url) {
    return fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .catch(function () { return null; });
  }

  function render(el, job) {
    var pct = Math.round((job.progress || 0) * 100);
    var bar = el.querySelector(".progress-bar");
    bar.style.width = pct + "%";
    bar.setAttribute("aria-valuenow", pct);
    el.querySelector(".wl-job-text").textContent = job.progress_text;
  }

  function selecting() {
    return document.querySelector("input.action-checkbox:checked, input.action-rowtoggle:checked") !== null;
  }

  function poll() {
    var changed = false;
    var checks = [];
    document.querySelectorAll("[data-job-id]").forEach(function (el) {
      if (ACTIVE.indexOf(el.dataset.jobStatus) < 0) { return; }
      checks.push(getJson(el.dataset.statusUrl).then(function (job) {
        if (!job) { return; }
        render(el, job);
        if (job.status !== el.dataset.jobStatus) { changed = true; }
      }));
    });
    var watch = document.querySelector("[data-jobs-summary-url]");
    if (watch) {
      checks.push(getJson(watch.dataset.jobsSummaryUrl).then(function (summary) {
        if (summary && String(summary.latest_id) !== watch.dataset.jobsLatestId) { changed = true; }
      }));
    }
    Promise.all(checks).then(function () {
      if (changed && !selecting()) { window.location.reload(); return; }
      window.setTimeout(poll, INTERVAL_MS);
    });
  }

  if (document.querySelector("[data-job-id], [data-jobs-summary-url]")) {
    window.setTimeout(poll, INTERVAL_MS);
  }
})();
