// The web UI's entry point: who the caller is (local session or a pasted token), the
// navigation, and the view chosen by the URL's fragment.

import { gql, h, token, setToken } from "./api.js";
import { graphView } from "./graph.js";
import { assetView } from "./asset.js";
import { runsView, runView, backfillsView, backfillView } from "./runs.js";

const main = document.getElementById("main");
const who = document.getElementById("who");
let current = null; // the AbortController of the view on screen

function route() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query || "") };
}

async function show() {
  if (current) current.abort();
  current = new AbortController();
  const signal = current.signal;
  const { parts, params } = route();
  for (const a of document.querySelectorAll("header nav a")) {
    const here = (a.getAttribute("href") === "#/" && (parts.length === 0 || parts[0] === "asset")) || a.getAttribute("href") === "#/" + (parts[0] || "");
    if (here) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  document.title = "Cairn";
  try {
    if (parts.length === 0) await graphView(main, params, signal);
    else if (parts[0] === "asset" && parts[1]) await assetView(main, parts.slice(1).join("/"), signal);
    else if (parts[0] === "runs") await runsView(main, params, signal);
    else if (parts[0] === "run" && parts[1]) await runView(main, parts[1], signal);
    else if (parts[0] === "backfills") await backfillsView(main, signal);
    else if (parts[0] === "backfill" && parts[1]) await backfillView(main, parts[1], signal);
    else main.replaceChildren(h("p", {}, "No such page. ", h("a", { href: "#/" }, "Back to the lineage graph")));
  } catch (e) {
    if (signal.aborted) return;
    if (e.code === "UNAUTHENTICATED") return askForToken(e.message);
    main.replaceChildren(h("section", { class: "page error", role: "alert" }, h("h1", {}, "Something went wrong"), h("p", {}, e.message)));
  }
}

function askForToken(message) {
  const input = h("input", { id: "token", type: "password", autocomplete: "off", required: true, "aria-describedby": "token-help" });
  main.replaceChildren(h("section", { class: "page login" },
    h("h1", {}, "Sign in with an API token"),
    token() ? h("p", { class: "error", role: "alert" }, `The token was refused: ${message}`) : null,
    h("form", { onsubmit: (ev) => { ev.preventDefault(); setToken(input.value); start(); } },
      h("label", { for: "token" }, "API token"), input,
      h("p", { id: "token-help", class: "muted" }, "Made with `cairn token create`. Kept in this tab's session storage only: closing the tab forgets it."),
      h("button", { type: "submit" }, "Sign in"))));
  input.focus();
}

async function start() {
  // Who the caller is and the view's data are asked for at once (a view whose request is
  // refused for want of a token asks for one itself).
  show();
  try {
    const { me } = await gql("{ me { name role phi } }");
    who.replaceChildren(h("span", { id: "me" }, `${me.name} · ${me.role.toLowerCase()}${me.phi ? " · phi" : ""}`));
    if (token()) who.append(h("button", { type: "button", class: "link", onclick: () => { setToken(null); location.reload(); } }, "Sign out"));
  } catch {
    // The view shows the refusal (and asks for a token).
  }
}

window.addEventListener("hashchange", show);
start();
