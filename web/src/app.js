// The page's source: it calls the service through the TypeScript client buf generates from the
// .proto (web/src/gen, protoc-gen-es) over the Connect protocol, and is bundled with it by
// esbuild into internal/httpapi/web/app.js (npm run build in web/). The rendering works on the
// messages' protobuf JSON form, the same as the /v1/ JSON API's.
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { fromJson, toJson } from "@bufbuild/protobuf";
import { RecommenderService, RecommendRequestSchema, RecommendResponseSchema } from "./gen/recommender/v1/recommender_pb.js";

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
async function recommend(body) {
  try {
    const resp = await client.recommend(fromJson(RecommendRequestSchema, body));
    return toJson(RecommendResponseSchema, resp);
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
  load();
}

async function load() {
  if (!state.request) return;
  const req = Object.assign({}, state.request, {
    pageSize: 10,
    pageToken: state.tokens[state.page],
    diversity: Number($("diversity").value),
    explain: $("explain").checked,
  });
  $("context").textContent = state.label;
  setStatus("Loading…");
  $("results").setAttribute("aria-busy", "true");
  try {
    render(await recommend(req));
  } catch (e) {
    $("results").replaceChildren();
    setStatus("Error (" + e.code + "): " + e.message, true);
    updatePager(false);
  } finally {
    $("results").removeAttribute("aria-busy");
  }
}

function render(resp) {
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
    setStatus(results.length + " papers (" + mode + ")");
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
  li.appendChild(el("h3", "title", p.title || p.id));
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

function why(e) {
  const box = el("div", "why");
  const parts = [];
  if (e.lexicalScore) parts.push("lexical " + Number(e.lexicalScore).toFixed(2));
  if (e.denseScore) parts.push("dense " + Number(e.denseScore).toFixed(2));
  if (e.closestSeedId) parts.push("closest seed " + e.closestSeedId + " (" + Number(e.closestSeedSimilarity || 0).toFixed(2) + ")");
  box.appendChild(el("p", null, "Why: " + (parts.join(", ") || "relevance")));
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
  $("diversity").addEventListener("change", () => { state.tokens = [""]; state.page = 0; load(); });
  $("explain").addEventListener("change", load);
  $("next").addEventListener("click", () => { state.page++; load(); });
  $("prev").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); load(); });
  $("apikey").value = sessionStorage.getItem("apikey") || "";
  $("apikey").addEventListener("change", () => sessionStorage.setItem("apikey", $("apikey").value.trim()));
});
