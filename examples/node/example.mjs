// A Node program of someone else's that calls the recommender through its TypeScript client
// package (@paperrec/recommender-client, installed from the tarball npm pack makes):
//
//   node example.mjs http://127.0.0.1:8080 "federated learning with privacy"
//
// It prints the index, then the best three papers for the text. cmd/recommender's
// TestNodeClient runs it against a demo server.
import { createRecommenderClient } from "@paperrec/recommender-client";

const [base, query] = process.argv.slice(2);
if (!base || !query) {
  console.error("usage: node example.mjs BASE_URL QUERY");
  process.exit(2);
}
const client = createRecommenderClient(base, { apiKey: process.env.RECOMMENDER_API_KEY, timeoutMs: 10_000 });
const info = await client.getIndexInfo({});
console.log(`${info.paperCount} papers, model ${info.embeddingModel}`);
const resp = await client.recommend({ query, pageSize: 3, explain: true });
for (const r of resp.results) {
  console.log(`${Math.round(100 * r.relevance)}% ${r.paper.id} ${r.paper.title} (${r.explanation.summary})`);
}
