package token

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"unicode/utf8"
)

// This file checks a compact JWS directly on its three base64url segments,
// with the standard library only: decoding the segments, reading the JOSE
// header, finding the unverified iss, and verifying the signature over the
// signing input exactly as it was sent (RFC 7515, section 5.2).

// b64url is the strict unpadded base64url encoding: it refuses padding and
// non-zero trailing bits, so that every byte string has exactly one
// accepted encoding. decodeSegment refuses CR and LF, which the encoding
// package skips even in strict mode.
var b64url = base64.RawURLEncoding.Strict()

// decodeSegment decodes one base64url segment of a compact JWS into dst,
// which must hold at least b64url.DecodedLen(len(seg)) bytes, and returns
// the decoded bytes. It accepts only the URL-safe alphabet, without
// padding, line breaks or non-zero trailing bits.
func decodeSegment(dst, seg []byte) ([]byte, error) {
	// The strict decoder refuses every byte outside the alphabet but
	// skips CR and LF.
	if i := bytes.IndexAny(seg, "\r\n"); i >= 0 {
		return nil, fmt.Errorf("base64url: %w", base64.CorruptInputError(i))
	}
	n, err := b64url.Decode(dst, seg)
	if err != nil {
		return nil, fmt.Errorf("base64url: %w", err)
	}
	return dst[:n], nil
}

// jwtHeader holds the JOSE header parameters the verifier inspects.
type jwtHeader struct {
	// Alg, Kid and Typ match their parameter names case-insensitively, the
	// last one winning, as encoding/json fills a struct; the verifier has
	// always read its header that way.
	Alg string
	Kid string
	Typ string
	// Crit and B64 hold the raw value of a "crit" or "b64" parameter, in
	// any letter case; either one refuses the token.
	Crit []byte
	B64  []byte

	// exactAlg is the value of the parameter named exactly "alg", the one
	// the signature algorithm is taken from; hasExactAlg says it exists.
	exactAlg    string
	hasExactAlg bool
	// needsJOSE is set when the header is anything but a flat object of
	// distinct names with string, boolean or null values: when it embeds a
	// key or certificate ("jwk", "x5c"), carries a "nonce", repeats a
	// name, or holds a number, object or array. go-jose then checks its
	// syntax as it did for every token before (it refuses, for example,
	// repeated names at any depth and numbers beyond float64), although the
	// verifier never trusts those parameters. ID tokens in the wild never
	// take this path.
	needsJOSE bool
}

// parseHeader reads a decoded JOSE header: a JSON object whose "alg",
// "kid" and "typ" must be strings when present.
func parseHeader(b []byte) (jwtHeader, error) {
	var h jwtHeader
	if err := checkObject(b); err != nil {
		return h, err
	}
	var seen [16][]byte
	nseen := 0
	m := objectMembers{b: b, i: 1}
	for {
		k, val, ok := m.next()
		if !ok {
			return h, nil
		}
		key, err := unquote(k)
		if err != nil {
			return h, err
		}
		if nseen == len(seen) {
			h.needsJOSE = true
		} else {
			for _, prev := range seen[:nseen] {
				if bytes.Equal(prev, key) {
					h.needsJOSE = true
				}
			}
			seen[nseen] = key
			nseen++
		}
		if c := val[0]; c == '{' || c == '[' || c == '-' || '0' <= c && c <= '9' {
			h.needsJOSE = true
		}
		switch {
		case string(key) == "alg":
			s, _, err := stringValue("alg", val)
			if err != nil {
				return h, err
			}
			h.exactAlg, h.hasExactAlg = s, true
		case string(key) == "jwk" || string(key) == "x5c" || string(key) == "nonce":
			if string(val) != "null" {
				h.needsJOSE = true
			}
		}
		switch {
		case foldEqual(key, "alg"):
			err = setString(&h.Alg, "alg", val)
		case foldEqual(key, "kid"):
			err = setString(&h.Kid, "kid", val)
		case foldEqual(key, "typ"):
			err = setString(&h.Typ, "typ", val)
		case foldEqual(key, "crit"):
			h.Crit = val
		case foldEqual(key, "b64"):
			h.B64 = val
		}
		if err != nil {
			return h, err
		}
	}
}

// issuerName returns the decoded payload's unverified iss claim, matched by
// name case-insensitively, the last one winning (as the verifier has always
// read it). ok is false when there is no such claim or it is not a string.
// The returned bytes may alias payload.
func issuerName(payload []byte) (iss []byte, ok bool, err error) {
	if err := checkObject(payload); err != nil {
		return nil, false, err
	}
	var last []byte
	m := objectMembers{b: payload, i: 1}
	for {
		k, val, more := m.next()
		if !more {
			break
		}
		key, err := unquote(k)
		if err != nil {
			return nil, false, err
		}
		if foldEqual(key, "iss") {
			last = val
		}
	}
	if len(last) == 0 || last[0] != '"' {
		return nil, false, nil
	}
	iss, err = unquote(last)
	if err != nil {
		return nil, false, err
	}
	return iss, true, nil
}

// unquote decodes a JSON string as encoding/json does: escapes resolved and
// invalid UTF-8 replaced. Plain strings, the usual case, alias raw.
func unquote(raw []byte) ([]byte, error) {
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return inner, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	return []byte(s), nil
}

// checkObject reports whether b is one well-formed JSON object, which the
// member walk relies on.
func checkObject(b []byte) error {
	if len(b) == 0 || b[0] != '{' {
		return errors.New("not a JSON object")
	}
	if !json.Valid(b) {
		// Unmarshal names the syntax error; valid input never gets here.
		var v struct{}
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("json: %w", err)
		}
		return errors.New("json: invalid JSON")
	}
	return nil
}

// setString stores a JSON string value in dst. null leaves dst alone, as
// encoding/json does; any other type is an error.
func setString(dst *string, name string, val []byte) error {
	s, isNull, err := stringValue(name, val)
	if err != nil || isNull {
		return err
	}
	*dst = s
	return nil
}

// stringValue decodes a JSON string value; null gives "" and isNull.
func stringValue(name string, val []byte) (s string, isNull bool, err error) {
	switch {
	case string(val) == "null":
		return "", true, nil
	case len(val) < 2 || val[0] != '"':
		return "", false, fmt.Errorf("json: header parameter %s is not a string", quote(name))
	}
	b, err := unquote(val)
	if err != nil {
		return "", false, fmt.Errorf("header parameter %s: %w", quote(name), err)
	}
	return commonString(b), false, nil
}

// commonString returns b as a string, without allocating for the values
// that nearly every header carries.
func commonString(b []byte) string {
	switch string(b) {
	case "RS256":
		return "RS256"
	case "RS384":
		return "RS384"
	case "RS512":
		return "RS512"
	case "PS256":
		return "PS256"
	case "PS384":
		return "PS384"
	case "PS512":
		return "PS512"
	case "ES256":
		return "ES256"
	case "ES384":
		return "ES384"
	case "ES512":
		return "ES512"
	case "EdDSA":
		return "EdDSA"
	case "JWT":
		return "JWT"
	}
	return string(b)
}

// foldEqual reports whether name equals want under Unicode case folding,
// the way encoding/json matches struct field names.
func foldEqual(name []byte, want string) bool {
	// A folded match is at most three bytes per letter of want.
	return len(name) <= 3*len(want) && strings.EqualFold(string(name), want)
}

// objectMembers walks the top-level members of a JSON object that
// checkObject has accepted, without decoding the values.
type objectMembers struct {
	b []byte
	i int // the offset after the last member returned, or after '{'
}

// next returns the raw name (with its quotes) and the raw value of the next
// member; ok is false at the end of the object.
func (m *objectMembers) next() (name, val []byte, ok bool) {
	b := m.b
	i := skipSpace(b, m.i)
	if i < len(b) && b[i] == ',' {
		i = skipSpace(b, i+1)
	}
	if i >= len(b) || b[i] != '"' {
		return nil, nil, false
	}
	end := stringEnd(b, i)
	name = b[i:end]
	i = skipSpace(b, end)
	if i >= len(b) || b[i] != ':' {
		return nil, nil, false
	}
	i = skipSpace(b, i+1)
	if i >= len(b) {
		return nil, nil, false
	}
	vend := valueEnd(b, i)
	m.i = vend
	return name, b[i:vend], true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the offset after the string that starts at b[i] ('"').
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// valueEnd returns the offset after the value that starts at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = stringEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' &&
		b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	return j
}

// signatureDigest hashes the signing input with the hash of alg. It
// returns nil for EdDSA, which signs the input itself.
func signatureDigest(alg string, input []byte) []byte {
	switch alg {
	case "RS256", "PS256", "ES256":
		d := sha256.Sum256(input)
		return d[:]
	case "RS384", "PS384", "ES384":
		d := sha512.Sum384(input)
		return d[:]
	case "RS512", "PS512", "ES512":
		d := sha512.Sum512(input)
		return d[:]
	}
	return nil
}

func hashOf(alg string) crypto.Hash {
	switch alg[len(alg)-3:] {
	case "384":
		return crypto.SHA384
	case "512":
		return crypto.SHA512
	}
	return crypto.SHA256
}

// verifySignature reports whether sig is a valid alg signature by key over
// the signing input, whose digest signatureDigest has computed. It accepts
// what go-jose v4 accepted: RSASSA-PSS with any salt length (rsa.VerifyPSS
// with nil options), ECDSA only on the curve of alg and only as the
// fixed-size big-endian r||s of RFC 7518, section 3.4.
func verifySignature(alg string, key any, input, digest, sig []byte) bool {
	switch pub := key.(type) {
	case *rsa.PublicKey:
		switch alg {
		case "RS256", "RS384", "RS512":
			return rsa.VerifyPKCS1v15(pub, hashOf(alg), digest, sig) == nil
		case "PS256", "PS384", "PS512":
			return rsa.VerifyPSS(pub, hashOf(alg), digest, sig, nil) == nil
		}
	case *ecdsa.PublicKey:
		var curve elliptic.Curve
		var size int
		switch alg {
		case "ES256":
			curve, size = elliptic.P256(), 32
		case "ES384":
			curve, size = elliptic.P384(), 48
		case "ES512":
			curve, size = elliptic.P521(), 66
		default:
			return false
		}
		if pub.Curve != curve || len(sig) != 2*size {
			return false
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(pub, digest, r, s)
	case ed25519.PublicKey:
		return alg == "EdDSA" && len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, input, sig)
	}
	return false
}
