// Package httpapi serves the recommender's API as JSON over HTTP for browsers and other web
// clients, its OpenAPI description, and a small "similar papers" page.
package httpapi
