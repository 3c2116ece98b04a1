// Package embed turns paper text into dense vectors through an OpenAI-compatible embeddings API
// (OpenAI, Azure OpenAI, Ollama, vLLM, text-embeddings-inference, LiteLLM): batching, rate
// limiting, retries and validation of what comes back.
package embed
