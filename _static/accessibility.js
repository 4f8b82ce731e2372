// Loaded on every page of the book (Jupyter Book adds every .js file in _static/).
// The bibliography: docutils marks each entry role="doc-biblioentry" inside a role="list" container, but
// DPUB-ARIA 1.1 deprecates that role, so screen readers (and axe-core) meet a list with no items in it.
// Each entry gets the list-item role it stands for.
document.addEventListener("DOMContentLoaded", () => {
  for (const entry of document.querySelectorAll('.citation-list > [role="doc-biblioentry"]')) {
    entry.setAttribute("role", "listitem");
  }
});

// The navigation sidebar: the theme opens and closes a chapter's sections with a <summary> that holds only
// a chevron icon, so a screen reader announces an unnamed control. Each gets a name saying what it shows.
document.addEventListener("DOMContentLoaded", () => {
  for (const toggle of document.querySelectorAll("summary")) {
    if (toggle.textContent.trim() || toggle.hasAttribute("aria-label")) continue;
    const link = toggle.closest("li")?.querySelector(":scope > a");
    const what = link ? link.textContent.trim() : "this part";
    toggle.setAttribute("aria-label", `Show or hide the sections of ${what}`);
  }
});
