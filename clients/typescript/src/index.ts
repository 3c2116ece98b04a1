// The paper recommender's TypeScript client: the messages and service generated from
// proto/recommender/v1 by protoc-gen-es (src/gen, by scripts/gen.sh), and a client over the
// Connect protocol, which the service's HTTP port speaks. Works in browsers and in Node 20+
// (both have fetch).
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { RecommenderService } from "./gen/recommender/v1/recommender_pb.js";

export * from "./gen/recommender/v1/recommender_pb.js";

/** Options of createRecommenderClient. */
export interface ClientOptions {
  /** Sent as a bearer token on every call (a read key, or a write key to write). */
  apiKey?: string;
  /** Deadline of every call, in milliseconds; none by default. */
  timeoutMs?: number;
  /** The fetch to use; the global one by default. */
  fetch?: typeof globalThis.fetch;
}

/** A client of RecommenderService: one async method per RPC, streams as async iterables. */
export type RecommenderClient = Client<typeof RecommenderService>;

/**
 * createRecommenderClient returns a client of the service whose HTTP port is at baseUrl
 * (for example http://127.0.0.1:8080).
 */
export function createRecommenderClient(baseUrl: string, options: ClientOptions = {}): RecommenderClient {
  const interceptors: Interceptor[] = [];
  const key = options.apiKey;
  if (key) {
    interceptors.push((next) => (req) => {
      req.header.set("Authorization", "Bearer " + key);
      return next(req);
    });
  }
  return createClient(RecommenderService, createConnectTransport({
    baseUrl,
    interceptors,
    defaultTimeoutMs: options.timeoutMs,
    fetch: options.fetch,
  }));
}
