// Switchyard console: module details on click, paged bundles, live execution lists, confirms,
// filters that apply on change. No inline script or handler anywhere: the console's
// Content-Security-Policy allows only this file.
(function () {
  "use strict";
  function show(section) {
    document.querySelectorAll(".panel .detail").forEach(function (d) { d.hidden = d !== section; });
    var hint = document.getElementById("hint");
    if (hint) hint.hidden = !!section;
  }
  function loadBundles(container, src, append) {
    fetch(src, { credentials: "same-origin" }).then(function (r) { return r.text(); }).then(function (html) {
      if (!append) container.innerHTML = "";
      var more = container.querySelector("button.more");
      if (more) more.remove();
      container.insertAdjacentHTML("beforeend", html);
      container.dataset.loaded = "1";
    });
  }
  function selectModule(node) {
    var id = node.getAttribute("data-module");
    document.querySelectorAll("svg.flow .node.selected").forEach(function (n) { n.classList.remove("selected"); });
    node.classList.add("selected");
    var section = document.getElementById("detail-" + id);
    show(section);
    if (!section) return;
    section.querySelectorAll(".bundles[data-src]").forEach(function (bundles) {
      if (!bundles.dataset.loaded) loadBundles(bundles, bundles.getAttribute("data-src"), false);
    });
  }
  document.addEventListener("click", function (event) {
    var filter = event.target.closest && event.target.closest("svg.flow .filter");
    if (filter) {
      var link = filter.closest(".link");
      var panel = document.getElementById("filter-detail");
      if (panel && link) {
        panel.querySelector("pre").textContent = link.getAttribute("data-filter") || "";
        show(panel);
      }
      return;
    }
    var node = event.target.closest && event.target.closest("svg.flow .node");
    if (node) { selectModule(node); return; }
    var more = event.target.closest && event.target.closest("button.more[data-src]");
    if (more) loadBundles(more.closest(".bundles"), more.getAttribute("data-src"), true);
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" && event.key !== " ") return;
    var node = event.target.closest && event.target.closest("svg.flow .node");
    if (node) { event.preventDefault(); selectModule(node); }
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.classList.contains("confirm") && !window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
  });
  document.addEventListener("change", function (event) {
    var select = event.target;
    if (select.matches && select.matches("select[data-autosubmit]") && select.form) select.form.submit();
  });
  var file = document.getElementById("blueprint-file");
  if (file) file.addEventListener("change", function () {
    if (!file.files.length) return;
    file.files[0].text().then(function (text) { document.getElementById("blueprint").value = text; });
  });
  var rows = document.querySelector("[data-events]");
  if (rows && window.EventSource) {
    var source = new EventSource(rows.getAttribute("data-events"));
    source.addEventListener("rows", function (e) { rows.innerHTML = e.data; });
  }
})();
