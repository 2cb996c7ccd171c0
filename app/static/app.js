// Feedhouse's pages: a little progressive enhancement, nothing the pages need to work.
// Loaded from /static only (the Content-Security-Policy allows no inline script). Every piece of
// HTML added here is a fragment the server rendered and escaped; nothing is built from data.
"use strict";

(function () {
  function fragment(html) {
    const template = document.createElement("template");
    template.innerHTML = html; // a <template> never runs scripts; the CSP forbids inline ones anyway
    return template.content;
  }

  async function fetchFragment(href) {
    const url = new URL(href, window.location.href);
    url.searchParams.set("fragment", "1");
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (response.status === 401) {
      window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname + window.location.search));
      throw new Error("signed out");
    }
    if (!response.ok) throw new Error("HTTP " + response.status);
    return fragment(await response.text());
  }

  // Avatars: an image that fails to load gives way to the initials beneath it.
  function avatars(root) {
    root.querySelectorAll("img[data-fallback]").forEach(function (img) {
      if (img.complete && img.naturalWidth === 0) {
        img.remove();
        return;
      }
      img.addEventListener("error", function () { img.remove(); }, { once: true });
    });
  }

  // Filter forms apply as soon as a checkbox or a select changes (the Apply button stays for keyboards).
  function autosubmit(form) {
    form.addEventListener("change", function (event) {
      if (event.target.matches("input[type=checkbox], select")) form.requestSubmit();
    });
  }

  // Older events: the link works without script; with it the next page is appended in place, and
  // reaching the end of the list loads the next page by itself (infinite scroll).
  function older(list) {
    let busy = false;
    const observer = "IntersectionObserver" in window
      ? new IntersectionObserver(function (entries) {
        entries.forEach(function (entry) { if (entry.isIntersecting) load(entry.target); });
      }, { rootMargin: "600px 0px" })
      : null;

    function watch() {
      const link = list.querySelector("a[data-more]");
      if (link && observer) observer.observe(link);
    }

    async function load(link) {
      if (busy || !link.isConnected) return;
      busy = true;
      if (observer) observer.unobserve(link);
      link.setAttribute("aria-busy", "true");
      link.textContent = "Loading older events…";
      const hadFocus = document.activeElement === link;
      try {
        const items = await fetchFragment(link.href);
        avatars(items);
        const first = items.querySelector("li.event summary");
        link.closest("li").replaceWith(items);
        if (hadFocus && first) first.focus();
      } catch (error) {
        link.removeAttribute("aria-busy");
        link.textContent = "Older events (retry)";
      }
      busy = false;
      watch();
    }

    list.addEventListener("click", function (event) {
      const link = event.target.closest("a[data-more]");
      if (link) {
        event.preventDefault();
        load(link);
      }
    });
    watch();
  }

  // The live feed: poll the newest page and put events not shown yet at their place (newest first).
  function live(list) {
    const status = document.getElementById("live-status");
    const seconds = Math.max(1, Number(list.dataset.pollSeconds) || 2);
    function position(item) {
      return [Number(item.dataset.time), item.dataset.messageId || ""];
    }
    function before(a, b) { // true when a sorts after b in "newest first" order
      return a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]);
    }
    async function poll() {
      try {
        const items = await fetchFragment(list.dataset.poll);
        const shown = new Set(Array.from(list.querySelectorAll("li.event"), function (li) { return li.dataset.key; }));
        const fresh = Array.from(items.querySelectorAll("li.event")).filter(function (li) { return !shown.has(li.dataset.key); });
        let added = 0;
        fresh.reverse().forEach(function (li) { // oldest first, so each lands above the older ones
          const here = position(li);
          const next = Array.from(list.querySelectorAll("li.event")).find(function (other) {
            return before(here, position(other));
          });
          if (!next && list.querySelector("li.event")) return; // older than everything shown: paging finds it
          li.classList.add("fresh");
          avatars(li);
          list.insertBefore(li, next || list.firstChild);
          added += 1;
        });
        if (added && status) status.textContent = added + (added === 1 ? " new event" : " new events");
      } catch (error) {
        if (status) status.textContent = "Live updates paused (" + error.message + "); retrying.";
      }
      window.setTimeout(poll, seconds * 1000);
    }
    window.setTimeout(poll, seconds * 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    avatars(document);
    document.querySelectorAll("form[data-autosubmit]").forEach(autosubmit);
    document.querySelectorAll("ol.events").forEach(function (list) {
      older(list);
      if (list.dataset.poll) live(list);
    });
  });
})();
