// End-to-end test of the page in a real browser (Debian's Chromium, driven by Playwright):
// search, open similar papers, toggle explain, paste an abstract, page forward, a deep link
// opened cold, links to papers, the empty state, a narrow screen, the keyboard, and a screenshot. Run by cmd/recommender's TestBrowserPage:
//
//   node e2e.mjs http://127.0.0.1:8080 screenshot.png
//
// It exits non-zero, saying which step failed, when the page does not show what it should.
import { chromium } from "playwright-core";

const [base, screenshot] = process.argv.slice(2);
if (!base || !screenshot) {
  console.error("usage: node e2e.mjs BASE_URL SCREENSHOT.png");
  process.exit(2);
}

// settled waits until the page has rendered the answer to the last action: the results list is
// aria-busy from the click or key press until the new cards (or error) are in, and the old cards
// stay on screen meanwhile, so waiting for "a card" alone could read the previous list.
async function settled(page) {
  await page.waitForFunction(() => !document.querySelector("#results").hasAttribute("aria-busy")
    && !document.querySelector("#status").textContent.startsWith("Loading"));
}

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
  console.log("ok  " + what);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 1400 } });
  const consoleErrors = [];
  // Script errors only: the browser also logs the HTTP errors this test provokes on purpose.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) consoleErrors.push(m.text());
  });
  page.on("response", (r) => { if (r.status() === 404) consoleErrors.push("404 for " + r.url()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));

  // A paper with an arXiv id, written through the JSON API, for the link to arXiv.
  const upsert = await fetch(base + "/v1/UpsertPapers", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ papers: [{ id: "2401.00001", title: "Speech recognition for arXiv links", abstract: "Speech recognition with acoustic models.", authors: ["Ana Ribeiro", "Wei Chen"], year: 2024 },
      { id: "linked-1", title: "Acoustic modelling with a url of its own", abstract: "A note on speech recognition, published on another site, with a long discussion of acoustic modelling choices and their costs.", authors: ["Mei Tanaka", "Jonas Berg"], year: 2023, url: "https://example.org/papers/linked-1" }] }) });
  check(upsert.ok, "a paper with an arXiv id and one with a url are stored (" + upsert.status + ")");

  await page.goto(base + "/");
  check((await page.title()) === "Paper recommender", "the page loads");

  // Search.
  await page.fill("#query", "speech recognition");
  await page.press("#query", "Enter");
  await settled(page);
  const titles = await page.locator("#results .card h3").allTextContents();
  check(titles.length >= 3, "a search shows result cards (" + titles.length + ")");
  check(/speech/i.test(titles[0]), "the first result is about speech: " + titles[0]);
  check((await page.textContent("#status")).startsWith(titles.length + " papers"), "the status says how many papers");
  check(new URL(page.url()).searchParams.get("q") === "speech recognition", "the URL holds the query: " + page.url());
  const arxivLink = await page.locator('#results .card[data-id="2401.00001"] h3 a').getAttribute("href");
  check(arxivLink === "https://arxiv.org/abs/2401.00001", "a card links to its paper on arXiv: " + arxivLink);
  const ownLink = await page.locator('#results .card[data-id="linked-1"] h3 a').getAttribute("href");
  check(ownLink === "https://example.org/papers/linked-1", "a card links to the url its paper carries: " + ownLink);
  const meta = await page.locator("#results .card .meta").first().textContent();
  const relevant = /\b(\d{1,3})% relevant/.exec(meta);
  check(relevant && Number(relevant[1]) > 0 && Number(relevant[1]) <= 100 && /\b20\d\d\b/.test(meta) && /,/.test(meta),
    "cards show authors, year and the calibrated relevance: " + meta);

  // Similar papers for the first result: once the server has built the lists (in the
  // background after loading the demo corpus), from the first one's precomputed list.
  for (let i = 0; ; i++) {
    const info = await (await fetch(base + "/v1/GetIndexInfo", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" })).json();
    if (info.neighbourLists && info.neighbourLists.built && !Number(info.neighbourLists.pendingWrites)) break;
    check(i < 600, "the neighbour lists are built within a minute: " + JSON.stringify(info.neighbourLists));
    await new Promise((r) => setTimeout(r, 100));
  }
  const seedId = await page.locator("#results .card").first().getAttribute("data-id");
  await page.locator("#results .card").first().getByRole("button", { name: /Papers similar to/ }).click();
  await settled(page);
  check((await page.textContent("#context")).startsWith("Papers similar to"), "the heading says whose similar papers these are");
  const similarIds = await page.locator("#results .card").evaluateAll((cards) => cards.map((c) => c.dataset.id));
  check(similarIds.length > 0 && !similarIds.includes(seedId), "similar papers are shown, without the seed " + seedId);
  check((await page.textContent("#status")).includes("from the precomputed list"), "they come from the paper's precomputed list: " + await page.textContent("#status"));
  check((await page.evaluate(() => document.activeElement.id)) === "context", "focus moves to the new results' heading");

  // Explain.
  await page.check("#explain");
  await settled(page);
  const cardsWithTerms = await page.locator("#results .card").evaluateAll((cards) =>
    cards.filter((c) => c.querySelectorAll(".why .term").length > 0).length);
  check(cardsWithTerms === similarIds.length, "explain shows shared terms on every card");
  const term = await page.locator("#results .card .why .term").first().textContent();
  const text = (await page.locator("#results .card").first().textContent()).toLowerCase();
  check(text.includes(term.toLowerCase()), "a shared term appears in its card: " + term);
  const whyText = await page.locator("#results .card .why p").first().textContent();
  check(/^Why: shares \S/.test(whyText) && !/\d\.\d/.test(whyText), "why reads as words, not scores: " + whyText);
  await page.screenshot({ path: screenshot });
  console.log("ok  screenshot saved to " + screenshot);

  // Paste an abstract: papers like a paper the index does not hold.
  await page.click("#paste summary");
  await page.fill("#paper-title", "A draft on recognising speech");
  await page.fill("#paper-abstract", "We train acoustic models for automatic speech recognition in noisy rooms.");
  await page.click("#paper button[type=submit]");
  await settled(page);
  check((await page.textContent("#context")).startsWith("Papers like your paper"), "the heading says the results are like the pasted paper");
  const pasted = await page.locator("#results .card h3").allTextContents();
  check(pasted.length > 0 && /speech/i.test(pasted[0]), "a pasted abstract finds papers like it: " + pasted[0]);
  await page.click("#paste summary");
  // Back to the similar papers of the first search's first result, for the pager below.
  await page.fill("#query", "speech recognition");
  await page.press("#query", "Enter");
  await settled(page);
  await page.locator("#results .card").first().getByRole("button", { name: /Papers similar to/ }).click();
  await settled(page);

  // Page forward and back.
  check(await page.isEnabled("#next"), "there is a next page");
  await page.click("#next");
  await settled(page);
  check((await page.textContent("#page")) === "Page 2", "the pager says page 2");
  const page2 = await page.locator("#results .card").evaluateAll((cards) => cards.map((c) => c.dataset.id));
  check(page2.length > 0 && page2.every((id) => !similarIds.includes(id)), "page 2 shows other papers");
  check(await page.isEnabled("#prev"), "page 2 can go back");
  const deepLink = page.url();
  check(new URL(deepLink).searchParams.get("page") === "2" && new URL(deepLink).searchParams.getAll("seed").length === 1,
    "the URL holds the seed and the page: " + deepLink);
  await page.click("#prev");
  await settled(page);
  const back = await page.locator("#results .card").evaluateAll((cards) => cards.map((c) => c.dataset.id));
  check(JSON.stringify(back) === JSON.stringify(similarIds), "going back shows page 1 again");

  // The deep link, opened cold in a fresh browser context, shows the same page 2.
  const cold = await browser.newContext();
  const other = await cold.newPage();
  await other.goto(deepLink);
  await settled(other);
  const coldIds = await other.locator("#results .card").evaluateAll((cards) => cards.map((c) => c.dataset.id));
  check(JSON.stringify(coldIds) === JSON.stringify(page2), "a deep link opened cold shows the same results: " + coldIds.join(" "));
  check((await other.textContent("#page")) === "Page 2" && (await other.textContent("#context")).startsWith("Papers similar to “"),
    "and the same page, under the seed's title");
  await cold.close();
  // The browser's back button restores the previous view.
  await page.goBack();
  await settled(page);
  const backAgain = await page.locator("#results .card").evaluateAll((cards) => cards.map((c) => c.dataset.id));
  check(JSON.stringify(backAgain) === JSON.stringify(page2) && new URL(page.url()).searchParams.get("page") === "2",
    "the back button returns to page 2");

  // Empty state.
  await page.fill("#query", "zzyzx qwfp");
  await page.press("#query", "Enter");
  await settled(page);
  check(/No papers found/.test(await page.textContent("#status")), "the empty state is shown");
  check((await page.locator("#results .card").count()) === 0, "a search that matches nothing says so");

  // Error state: a search of only stop words is refused by the API with a field violation.
  await page.fill("#query", "the of and");
  await page.press("#query", "Enter");
  await settled(page);
  check(await page.evaluate(() => document.querySelector("#status").classList.contains("error")), "the error state is shown");
  const err = await page.textContent("#status");
  check(/InvalidArgument/.test(err) && /query/.test(err), "an API error is shown with its code and field: " + err);
  check((await page.getAttribute("#status", "role")) === "alert", "errors are announced as alerts");

  // Keyboard only: Tab reaches the search box, Enter searches.
  await page.goto(base + "/");
  await page.keyboard.press("Tab");
  check((await page.evaluate(() => document.activeElement.id)) === "query", "Tab reaches the search box first");
  await page.keyboard.type("federated learning");
  await page.keyboard.press("Enter");
  await settled(page);
  check((await page.locator("#results .card").count()) > 0, "Enter in the search box searches");

  // Narrow screen: nothing overflows sideways.
  await page.setViewportSize({ width: 360, height: 800 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, "no horizontal scrolling at 360px (overflow " + overflow + "px)");

  check(consoleErrors.length === 0, "no console errors" + (consoleErrors.length ? ": " + consoleErrors.join("; ") : ""));
} catch (e) {
  console.error(String(e && e.stack || e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
