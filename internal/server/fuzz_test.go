package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// FuzzDecideBody sends arbitrary bodies to POST /v1/decisions: whatever the
// body, the answer is JSON with a decision id, a status the contract names
// (never a 500 for the caller's mistake), and the server keeps serving.
func FuzzDecideBody(f *testing.F) {
	s := startStack(f)
	good := s.mint(f, alice)
	for _, seed := range []string{
		`{"id_token":"` + good + `"}`,
		`{"id_token":"` + good + `","context":{"dashboard":"sales","n":[1,2,{"x":null}]}}`,
		`{"id_token":"` + good + `","explain":true}`,
		`{}`, `[]`, `null`, `"x"`, `{"id_token":1}`, `{"id_token":null}`,
		`{"id_token":"a.b.c","context":"nope"}`, `{"id_token":"` + good + `","admin":true}`,
		`{"id_token":"eyJhbGciOiJub25lIn0.e30."}`, "\xff\xfe", `{"id_token":"\u0000"}`,
	} {
		f.Add([]byte(seed))
	}
	client := &http.Client{}
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, err := client.Post(s.httpURL+"/v1/decisions", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("server stopped answering: %v", err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		switch resp.StatusCode {
		case 200, 400, 401, 413:
		default:
			t.Fatalf("status %d for body %q: %s", resp.StatusCode, body, raw)
		}
		if resp.Header.Get("x-decision-id") == "" {
			t.Errorf("no x-decision-id for body %q", body)
		}
		var out map[string]any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Errorf("answer is not JSON: %q", raw)
		}
		if resp.StatusCode == 200 && out["allowed"] == true && !bytes.Contains(body, []byte(good)) {
			t.Errorf("allowed without the good token: body %q", body)
		}
	})
}
