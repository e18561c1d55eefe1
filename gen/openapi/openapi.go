// Package openapi embeds the OpenAPI 2 document that protoc-gen-openapiv2
// generates from proto/authz/v1, for the server to serve on /openapi.json.
// The JSON beside this file is generated; this file is not.
package openapi

import _ "embed"

// JSON is the generated OpenAPI 2 document, with proto field names.
//
//go:embed authzd.swagger.json
var JSON []byte
