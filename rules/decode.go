package rules

import (
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxDocumentSize bounds framework and task documents.
const MaxDocumentSize = 1 << 20

// decodeStrict parses YAML (or JSON, a subset) in data into out, a pointer to
// a struct, rejecting unknown fields, duplicate keys, aliases and values of
// the wrong type. It returns the line of every field path it saw, so later
// semantic checks can point at the right line.
func decodeStrict(file string, data []byte, out any) (pos map[string]int, err error) {
	pos = map[string]int{}
	e := newErrs(file, pos)
	if len(data) > MaxDocumentSize {
		e.add("", ErrTooLarge, "document is %d bytes; the limit is %d", len(data), MaxDocumentSize)
		return pos, e.err()
	}
	var root yaml.Node
	if perr := safeUnmarshal(data, &root); perr != nil {
		line, msg := SyntaxErrorLine(data, perr)
		msg = strings.TrimPrefix(msg, "yaml: ")
		e.list = append(e.list, FieldError{File: file, Line: line, Msg: "not valid YAML or JSON: " + msg, Err: ErrSyntax})
		return pos, e.err()
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		e.add("", ErrMissing, "document is empty")
		return pos, e.err()
	}
	d := &decoder{errs: e}
	d.value(root.Content[0], reflect.ValueOf(out).Elem(), "")
	return pos, e.err()
}

// safeUnmarshal turns a parser panic (none known in this yaml version, but
// documents come from the network) into an error.
func safeUnmarshal(data []byte, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("parser failed: %v", r)
		}
	}()
	return yaml.Unmarshal(data, n)
}

type decoder struct {
	*errs
}

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	nodeDecoderType = reflect.TypeFor[nodeDecoder]()
)

// nodeDecoder is implemented by document types that read their own node
// (quantities with units, whose meaning depends on the map key).
type nodeDecoder interface {
	decodeNode(n *yaml.Node, d *decoder, path string)
}

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if path != "" || n.Line > 0 {
		if _, ok := d.pos[path]; !ok {
			d.pos[path] = n.Line
		}
	}
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		d.add(path, ErrWrongType, "anchors and aliases are not supported; write the value out")
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // absent: keep the zero value
	}
	if v.CanAddr() && v.Addr().Type().Implements(nodeDecoderType) {
		v.Addr().Interface().(nodeDecoder).decodeNode(n, d, path)
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshaler) {
		if n.Kind != yaml.ScalarNode {
			d.add(path, ErrWrongType, "want a single value, got %s", kindName(n))
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			d.addErr(path, err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(n, v.Elem(), path)
	case reflect.Struct:
		d.structValue(n, v, path)
	case reflect.Map:
		d.mapValue(n, v, path)
	case reflect.Slice:
		d.sliceValue(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.add(path, ErrWrongType, "want a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.add(path, ErrWrongType, "want true or false, got %s", kindName(n))
			return
		}
		b, _ := strconv.ParseBool(strings.ToLower(n.Value))
		v.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.add(path, ErrWrongType, "want an integer, got %s", kindName(n))
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, v.Type().Bits())
		if err != nil {
			d.add(path, ErrOutOfRange, "integer %s does not fit", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
			d.add(path, ErrWrongType, "want a number, got %s", kindName(n))
			return
		}
		f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
		if err != nil {
			d.add(path, ErrBadValue, "number %s cannot be read", n.Value)
			return
		}
		v.SetFloat(f)
	default:
		panic("rules: decoder does not support " + v.Type().String()) // a programming error in this package
	}
}

// addErr records err from a TextUnmarshaler, keeping its sentinel.
func (d *decoder) addErr(path string, err error) {
	var fe FieldError
	if ok := asFieldError(err, &fe); ok {
		d.add(path, fe.Err, "%s", fe.Msg)
		return
	}
	d.add(path, ErrBadValue, "%v", err)
}

func asFieldError(err error, fe *FieldError) bool {
	f, ok := err.(FieldError)
	if ok {
		*fe = f
	}
	return ok
}

func (d *decoder) structValue(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.add(path, ErrWrongType, "want a mapping of fields, got %s", kindName(n))
		return
	}
	fields := structFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := k.Value
		p := join(path, key)
		if k.Kind != yaml.ScalarNode {
			d.add(path, ErrWrongType, "field names must be strings, got %s", kindName(k))
			continue
		}
		d.pos[p] = k.Line
		if seen[key] {
			d.add(p, ErrDuplicateField, "field is given twice; keep one")
			continue
		}
		seen[key] = true
		idx, ok := fields[key]
		if !ok {
			d.add(p, ErrUnknownField, "unknown field %q; known fields: %s", key, strings.Join(sortedKeys(fields), ", "))
			continue
		}
		d.value(val, v.Field(idx), p)
		d.pos[p] = k.Line
	}
}

func (d *decoder) mapValue(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.add(path, ErrWrongType, "want a mapping, got %s", kindName(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMapWithSize(v.Type(), len(n.Content)/2))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.add(path, ErrWrongType, "keys must be strings, got %s", kindName(k))
			continue
		}
		p := join(path, k.Value)
		d.pos[p] = k.Line
		key := reflect.ValueOf(k.Value)
		if v.MapIndex(key).IsValid() {
			d.add(p, ErrDuplicateField, "key is given twice; keep one")
			continue
		}
		elem := reflect.New(v.Type().Elem()).Elem()
		d.value(val, elem, p)
		d.pos[p] = k.Line
		v.SetMapIndex(key, elem)
	}
}

func (d *decoder) sliceValue(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.add(path, ErrWrongType, "want a list, got %s", kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.value(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!int":
			return "integer " + n.Value
		case "!!float":
			return "number " + n.Value
		case "!!bool":
			return "boolean " + n.Value
		case "!!null":
			return "null"
		}
		return strconv.Quote(n.Value)
	}
	return "nothing"
}

// structFields maps yaml names to field indexes.
func structFields(t reflect.Type) map[string]int {
	out := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = i
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
