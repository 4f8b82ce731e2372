// Loaded on every page of the book (Jupyter Book adds every .js file in _static/).
// The bibliography: docutils marks each entry role="doc-biblioentry" inside a role="list" container, but
// DPUB-ARIA 1.1 deprecates that role, so screen readers (and axe-core) meet a list with no items in it.
// Each entry gets the list-item role it stands for.
document.addEventListener("DOMContentLoaded", () => {
  for (const entry of document.querySelectorAll('.citation-list > [role="doc-biblioentry"]')) {
    entry.setAttribute("role", "listitem");
  }
});
