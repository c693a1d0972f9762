// pifs-book: a link to a claim row inside a folded claim table opens the table and shows the row.
(function () {
  function openTarget() {
    var id = decodeURIComponent(window.location.hash.slice(1));
    if (!id) return;
    var el = document.getElementById(id);
    if (!el) return;
    for (var d = el.closest("details"); d; d = d.parentElement ? d.parentElement.closest("details") : null) {
      d.open = true;
    }
    el.scrollIntoView({block: "center"});
  }
  window.addEventListener("hashchange", openTarget);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", openTarget);
  else openTarget();
})();
