// Command openapigen writes the OpenAPI description of the HTTP/JSON API from the .proto
// descriptors (with their comments), as scripts/gen.sh runs it:
//
//	buf build --as-file-descriptor-set -o image.binpb && go run ./internal/httpapi/openapigen image.binpb
//
// Each unary method of the service becomes POST /v1/<Method>; messages become schemas named by
// their full name, fields by their protobuf JSON names and types.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

type obj = map[string]any

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: openapigen IMAGE.binpb > openapi.json")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "openapigen:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(b, &set); err != nil {
		return err
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		return err
	}
	fd, err := files.FindFileByPath("recommender/v1/recommender.proto")
	if err != nil {
		return err
	}
	svc := fd.Services().Get(0)
	schemas := obj{}
	paths := obj{}
	for i := range svc.Methods().Len() {
		m := svc.Methods().Get(i)
		if m.IsStreamingClient() || m.IsStreamingServer() {
			continue
		}
		addSchema(schemas, m.Input())
		addSchema(schemas, m.Output())
		paths["/v1/"+string(m.Name())] = obj{"post": obj{
			"operationId": string(m.Name()),
			"summary":     comment(m),
			"requestBody": obj{"required": true, "content": jsonContent(ref(m.Input()))},
			"responses": obj{
				"200":     obj{"description": "OK", "content": jsonContent(ref(m.Output()))},
				"default": obj{"description": "An error: the gRPC code by name and number, a message, and details such as field violations.", "content": jsonContent(obj{"$ref": "#/components/schemas/Error"})},
			},
		}}
	}
	// StreamFeed, the one server stream on /v1, as Server-Sent Events (internal/httpapi/sse.go).
	stream := svc.Methods().ByName("StreamFeed")
	addSchema(schemas, stream.Output())
	param := func(name, in, description string) obj {
		return obj{"name": name, "in": in, "required": in == "path", "description": description, "schema": obj{"type": "string"}}
	}
	paths["/v1/feeds/{feed_id}/events"] = obj{"get": obj{
		"operationId": "StreamFeedEvents",
		"summary": comment(stream) + "\n\nAs Server-Sent Events: papers as \"paper\" events, heartbeats as \"heartbeat\", " +
			"a failure after the stream started as an \"error\" event; each event's data is a StreamFeedResponse in " +
			"protobuf JSON and its id the cursor, so an EventSource resumes by itself (Last-Event-ID).",
		"parameters": []obj{
			param("feed_id", "path", "the feed"),
			param("cursor", "query", "resume after this event's cursor"),
			param("since", "query", "start with the writes since this RFC 3339 time"),
			param("Last-Event-ID", "header", "as cursor; sent by an EventSource when it reconnects"),
		},
		"responses": obj{
			"200": obj{"description": "The event stream; each event's data is a " + ref(stream.Output())["$ref"].(string),
				"content": obj{"text/event-stream": obj{"schema": obj{"type": "string"}}}},
			"default": obj{"description": "An error before the stream started.", "content": jsonContent(obj{"$ref": "#/components/schemas/Error"})},
		},
	}}
	schemas["Error"] = obj{"type": "object", "properties": obj{
		"code":     obj{"type": "string", "description": "gRPC status code name, e.g. InvalidArgument"},
		"grpcCode": obj{"type": "integer", "format": "int32", "description": "gRPC status code number"},
		"message":  obj{"type": "string"},
		"details":  obj{"type": "array", "items": obj{"type": "object"}, "description": "google.rpc error details in protobuf JSON, with their @type"},
	}}
	doc := obj{
		"openapi": "3.0.3",
		"info": obj{"title": "recommender HTTP/JSON API", "version": "v1",
			"description": comment(svc) + "\n\nEvery unary RPC of " + string(svc.FullName()) + " is POST /v1/<Method> with the request message as protobuf JSON. IngestPapers streams and is served over gRPC only; StreamFeed is GET /v1/feeds/{feed_id}/events, as Server-Sent Events."},
		"paths":      paths,
		"components": obj{"schemas": schemas, "securitySchemes": obj{"apiKey": obj{"type": "http", "scheme": "bearer"}}},
		"security":   []obj{{"apiKey": []string{}}},
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Println(string(out))
	return err
}

func jsonContent(schema obj) obj { return obj{"application/json": obj{"schema": schema}} }

func ref(d protoreflect.Descriptor) obj {
	return obj{"$ref": "#/components/schemas/" + string(d.FullName())}
}

// comment is the leading comment of a descriptor in the .proto, joined into one paragraph.
func comment(d protoreflect.Descriptor) string {
	loc := d.ParentFile().SourceLocations().ByDescriptor(d)
	return strings.Join(strings.Fields(loc.LeadingComments), " ")
}

func addSchema(schemas obj, m protoreflect.MessageDescriptor) {
	name := string(m.FullName())
	if _, done := schemas[name]; done {
		return
	}
	props := obj{}
	schemas[name] = obj{"type": "object", "description": comment(m), "properties": props}
	for i := range m.Fields().Len() {
		f := m.Fields().Get(i)
		s := fieldSchema(schemas, f)
		s["description"] = comment(f)
		if f.IsList() {
			s = obj{"type": "array", "items": s, "description": comment(f)}
		}
		props[f.JSONName()] = s
	}
}

func fieldSchema(schemas obj, f protoreflect.FieldDescriptor) obj {
	switch f.Kind() {
	case protoreflect.BoolKind:
		return obj{"type": "boolean"}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return obj{"type": "integer", "format": "int32"}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return obj{"type": "integer", "format": "int64", "minimum": 0}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return obj{"type": "string", "format": "int64"} // protobuf JSON writes 64-bit integers as strings
	case protoreflect.FloatKind:
		return obj{"type": "number", "format": "float"}
	case protoreflect.DoubleKind:
		return obj{"type": "number", "format": "double"}
	case protoreflect.StringKind:
		return obj{"type": "string"}
	case protoreflect.BytesKind:
		return obj{"type": "string", "format": "byte"}
	case protoreflect.EnumKind:
		var names []string
		vals := f.Enum().Values()
		for i := range vals.Len() {
			names = append(names, string(vals.Get(i).Name()))
		}
		return obj{"type": "string", "enum": names}
	case protoreflect.MessageKind:
		addSchema(schemas, f.Message())
		return obj{"allOf": []obj{ref(f.Message())}}
	}
	return obj{}
}
