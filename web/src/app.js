// The page's source: it calls the service through the TypeScript client buf generates from the
// .proto (clients/typescript/src/gen, protoc-gen-es: the client package's own) over the Connect protocol, and is bundled with it by
// esbuild into internal/httpapi/web/app.js (npm run build in web/). The rendering works on the
// messages' protobuf JSON form, the same as the /v1/ JSON API's.
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { fromJson, toJson } from "@bufbuild/protobuf";
import {
  RecommenderService, RecommendRequestSchema, RecommendResponseSchema, SimilarPapersRequestSchema, SimilarPapersResponseSchema,
} from "../../clients/typescript/src/gen/recommender/v1/recommender_pb.js";

const $ = (id) => document.getElementById(id);
const state = { request: null, tokens: [""], page: 0, label: "" };

const client = createClient(RecommenderService, createConnectTransport({
  baseUrl: location.origin,
  interceptors: [(next) => (req) => {
    const key = sessionStorage.getItem("apikey");
    if (key) req.header.set("Authorization", "Bearer " + key);
    return next(req);
  }],
}));

class ApiError extends Error {
  constructor(message, code) { super(message); this.code = code; }
}

// recommend sends a request given in protobuf JSON and returns the response in the same form.
const recommend = (body) => call(client.recommend, RecommendRequestSchema, RecommendResponseSchema, body);

// similar asks for a paper's similar papers: from its precomputed list when the server keeps one.
const similar = (body) => call(client.similarPapers, SimilarPapersRequestSchema, SimilarPapersResponseSchema, body);

async function call(method, reqSchema, respSchema, body) {
  try {
    return toJson(respSchema, await method(fromJson(reqSchema, body)));
  } catch (e) {
    const err = ConnectError.from(e);
    if (err.code === Code.Unavailable && /fetch/i.test(err.rawMessage)) {
      throw new ApiError("the server cannot be reached", "Unavailable");
    }
    throw new ApiError(err.rawMessage, Code[err.code]);
  }
}

function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", !!isError);
  s.setAttribute("role", isError ? "alert" : "status");
}

function start(request, label) {
  state.request = request;
  state.label = label;
  state.tokens = [""];
  state.page = 0;
  load(true);
}

// The URL holds what the results depend on (query, seeds, mode, page, diversity, explain), so a
// view can be shared, bookmarked and reloaded; a pasted paper is not put in it.
function toURL() {
  const u = new URLSearchParams();
  const r = state.request || {};
  if (r.query) u.set("q", r.query);
  for (const id of r.positivePaperIds || []) u.append("seed", id);
  if ($("mode").value) u.set("mode", $("mode").value);
  if (state.page > 0) u.set("page", String(state.page + 1));
  if (Number($("diversity").value) > 0) u.set("diversity", $("diversity").value);
  if ($("explain").checked) u.set("explain", "1");
  const s = u.toString();
  return location.pathname + (s ? "?" + s : "");
}

// fromURL restores the state of a URL made by toURL and loads its results.
function fromURL() {
  const u = new URLSearchParams(location.search);
  const q = u.get("q") || "", seeds = u.getAll("seed");
  $("query").value = q;
  $("mode").value = ["lexical", "dense", "hybrid"].includes(u.get("mode")) ? u.get("mode") : "";
  $("diversity").value = u.get("diversity") || "0";
  $("diversity-value").textContent = $("diversity").value;
  $("explain").checked = u.get("explain") === "1";
  if (!q && seeds.length === 0) return;
  const request = {};
  if (q) request.query = q;
  if (seeds.length) request.positivePaperIds = seeds;
  state.request = request;
  state.label = q ? "Papers about “" + q + "”" : "Papers similar to " + seeds.join(", ");
  state.tokens = [""];
  state.page = Math.max(0, (parseInt(u.get("page"), 10) || 1) - 1);
  load(false);
}

function requestFor(page) {
  const req = Object.assign({}, state.request, {
    pageSize: 10,
    pageToken: state.tokens[page],
    diversity: Number($("diversity").value),
    explain: $("explain").checked,
  });
  if ($("mode").value) req.mode = "RETRIEVAL_MODE_" + $("mode").value.toUpperCase();
  return req;
}

// load shows the current page; push records it in the history (a new view), else it replaces
// the entry (a reload, a deep link, the back button).
async function load(push) {
  if (!state.request) return;
  const url = toURL();
  if (push && url !== location.pathname + location.search) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
  $("context").textContent = state.label;
  setStatus("Loading…");
  $("results").setAttribute("aria-busy", "true");
  try {
    // A deep link to page n has no page token: the pages before it give theirs.
    for (let p = 0; p < state.page && state.tokens[state.page] === undefined; p++) {
      if (state.tokens[p + 1] !== undefined) continue;
      const resp = await recommend(requestFor(p));
      if (!resp.nextPageToken) { state.page = p; break; }
      state.tokens[p + 1] = resp.nextPageToken;
    }
    const req = requestFor(state.page);
    // The first page of one paper's similar papers, as the server ranks them, is the paper's
    // precomputed list (or a search when it has none yet); later pages, and any other request,
    // are searches.
    if (state.page === 0 && isSimilarPapers(req)) {
      const resp = await similar({ paperId: req.positivePaperIds[0], pageSize: req.pageSize });
      if (!state.label.includes("“")) { // a link names the seed by id: show its title
        const seed = await client.getPaper({ paperId: req.positivePaperIds[0] });
        state.label = "Papers similar to “" + (seed.paper.title || seed.paper.id) + "”";
        $("context").textContent = state.label;
      }
      render(resp, resp.source === "NEIGHBOUR_SOURCE_LIST" ? "from the precomputed list" : "searched");
      updatePager(resp.results && resp.results.length === req.pageSize);
      return;
    }
    const resp = await recommend(req);
    const named = (resp.seeds || []).filter((s) => s.title && !s.negative);
    if (!state.request.query && state.request.positivePaperIds && named.length) {
      state.label = "Papers similar to " + named.map((s) => "“" + s.title + "”").join(", ");
      $("context").textContent = state.label;
    }
    render(resp);
  } catch (e) {
    $("results").replaceChildren();
    setStatus("Error (" + e.code + "): " + e.message, true);
    updatePager(false);
  } finally {
    $("results").removeAttribute("aria-busy");
  }
}

function isSimilarPapers(req) {
  return !req.query && (req.positivePaperIds || []).length === 1 && !req.positivePapers && !req.mode && !req.diversity && !req.explain;
}

function render(resp, source) {
  const list = $("results");
  list.replaceChildren();
  const results = resp.results || [];
  for (const r of results) list.appendChild(card(r));
  if (resp.nextPageToken) state.tokens[state.page + 1] = resp.nextPageToken;
  updatePager(!!resp.nextPageToken);
  if (results.length === 0) {
    setStatus(state.page === 0 ? "No papers found. Try other words." : "No more papers.");
  } else {
    const mode = (resp.mode || "").replace("RETRIEVAL_MODE_", "").toLowerCase();
    setStatus(results.length + " papers (" + [mode, source].filter(Boolean).join(", ") + ")");
  }
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function card(r) {
  const p = r.paper;
  const li = el("li", "card");
  li.dataset.id = p.id;
  const h = el("h3", "title");
  const href = paperURL(p);
  if (href) {
    const a = el("a", null, p.title || p.id);
    a.href = href;
    a.rel = "noopener";
    h.appendChild(a);
  } else {
    h.textContent = p.title || p.id;
  }
  li.appendChild(h);
  // The calibrated relevance reads as a chance; the raw score only orders one list.
  const meta = [(p.authors || []).join(", "), p.year ? String(p.year) : "", Math.round(100 * Number(r.relevance || 0)) + "% relevant"];
  li.appendChild(el("p", "meta", meta.filter(Boolean).join(" · ")));
  if (p.abstract) li.appendChild(el("p", "abstract", p.abstract));
  if (r.explanation) li.appendChild(why(r.explanation));
  const b = el("button", "secondary similar", "Similar papers");
  b.type = "button";
  b.setAttribute("aria-label", "Papers similar to " + (p.title || p.id));
  b.addEventListener("click", () => {
    start({ positivePaperIds: [p.id] }, "Papers similar to “" + (p.title || p.id) + "”");
    $("context").focus();
  });
  li.appendChild(b);
  return li;
}

// paperURL is where a paper can be read: its url, or arXiv's abstract page for an arXiv id
// (2401.01234, 2401.01234v2, cs/0112017).
function paperURL(p) {
  if (p.url && /^https?:\/\//.test(p.url)) return p.url;
  if (/^(\d{4}\.\d{4,5}|[a-z-]+(\.[A-Z]{2})?\/\d{7})(v\d+)?$/.test(p.id)) return "https://arxiv.org/abs/" + p.id;
  return "";
}

function why(e) {
  const box = el("div", "why");
  box.appendChild(el("p", null, "Why: " + (e.summary || "ranked by the words of your request")));
  const terms = el("ul", "terms");
  terms.setAttribute("aria-label", "Shared terms");
  for (const t of e.sharedTerms || []) terms.appendChild(el("li", "term", t.term));
  box.appendChild(terms);
  return box;
}

function updatePager(hasNext) {
  $("prev").disabled = state.page === 0;
  $("next").disabled = !hasNext;
  $("page").textContent = state.request ? "Page " + (state.page + 1) : "";
}

document.addEventListener("DOMContentLoaded", () => {
  $("search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = $("query").value.trim();
    if (q) start({ query: q }, "Papers about “" + q + "”");
  });
  $("paper").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const title = $("paper-title").value.trim();
    const abstract = $("paper-abstract").value.trim();
    if (!title && !abstract) {
      setStatus("Paste a title or an abstract first.", true);
      return;
    }
    start({ positivePapers: [{ title, abstract }] }, "Papers like your paper “" + (title || abstract.slice(0, 60) + "…") + "”");
    $("context").focus();
  });
  $("diversity").addEventListener("input", () => { $("diversity-value").textContent = $("diversity").value; });
  $("diversity").addEventListener("change", () => { state.tokens = [""]; state.page = 0; load(true); });
  $("mode").addEventListener("change", () => { state.tokens = [""]; state.page = 0; load(true); });
  $("explain").addEventListener("change", () => load(true));
  $("next").addEventListener("click", () => { state.page++; load(true); });
  $("prev").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); load(true); });
  window.addEventListener("popstate", fromURL);
  fromURL();
  $("apikey").value = sessionStorage.getItem("apikey") || "";
  $("apikey").addEventListener("change", () => sessionStorage.setItem("apikey", $("apikey").value.trim()));
});
