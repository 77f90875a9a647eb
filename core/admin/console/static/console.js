// The console's only script. A live part, an element with data-refresh="URL", is fetched
// again every data-every seconds (while the page is shown) and put in place. Signed out
// meanwhile (the fetch was sent to the login page), the page reloads and shows that page.
"use strict";

for (const part of document.querySelectorAll("[data-refresh]")) {
  const every = Number(part.dataset.every || 5) * 1000;
  const refresh = async () => {
    if (!document.hidden) {
      try {
        const response = await fetch(part.dataset.refresh, { credentials: "same-origin" });
        if (response.redirected) {
          location.reload();
          return;
        }
        if (response.ok) {
          part.innerHTML = await response.text();
        }
        part.classList.toggle("stale", !response.ok);
      } catch {
        part.classList.add("stale"); // the admin listener is away: show the last numbers, dimmed
      }
    }
    setTimeout(refresh, every);
  };
  setTimeout(refresh, every);
}
