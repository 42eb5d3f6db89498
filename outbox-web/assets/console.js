// Confirmation for actions, and an opt-in auto-refresh of read-only pages.
document.addEventListener("submit", function (e) {
  var msg = e.target.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) { e.preventDefault(); }
});
(function () {
  var box = document.getElementById("auto-refresh");
  if (!box) { return; }
  box.checked = localStorage.getItem("outbox-refresh") === "1";
  box.addEventListener("change", function () {
    localStorage.setItem("outbox-refresh", box.checked ? "1" : "0");
  });
  setInterval(function () { if (box.checked) { location.reload(); } }, 5000);
})();
