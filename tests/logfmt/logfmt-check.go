// logfmt-check: a strict, independent reader for starttlsd's log lines.
//
// Every line is read twice, and both readings must agree:
//
//  1. by go-logfmt (github.com/go-logfmt/logfmt, Debian's
//     golang-github-go-logfmt-logfmt-dev), the reader that Grafana's and
//     Loki's logfmt parsing derive from: no syntax error allowed;
//  2. by the grammar docs/logging.md promises, written here from scratch:
//     "event=NAME" first, pairs separated by exactly one space, keys
//     [a-z][a-z0-9_]*, bare values of printable ASCII other than = " \,
//     quoted values whose body is a JSON string (decoded with
//     encoding/json) holding only the escapes \" \\ \n \r \t \u00xx, no
//     raw control byte, DEL or C1 control, and well-formed UTF-8.
//
// Then the line is checked against the schema in docs/logging.md (-docs):
// the event has a section, every key is one of that event's documented
// keys, the keys come in the documented order, each at most once, the
// keys documented as "always" present are there (unless the line is the
// event's "msg" form or ends in truncated=1), and truncated=1 is last.
//
// Usage:
//
//	logfmt-check -docs docs/logging.md [-state FILE] FILE...
//	    check the starttlsd lines in FILEs: the stderr mirror
//	    ("2026-11-30T15:28:56.729Z starttlsd[PID]: TEXT") and syslog
//	    ("<PRI>... starttlsd[PID]: TEXT"); other lines are not ours and
//	    are skipped, but a skipped line holding "event=" is an error.
//	    With -state, only what was added since the last run is read (a
//	    file that was truncated or replaced is read from the start).
//	    Prints "N lines ok" or one line per error; exit 1 on errors.
//	logfmt-check -docs docs/logging.md -line TEXT
//	    check one bare logfmt text.
//	logfmt-check -docs docs/logging.md -code DIR
//	    compare the documented keys with what proxy/*.c in DIR writes:
//	    the same keys per event, in the documented order.
//	logfmt-check -docs docs/logging.md -dump
//	    print the documented keys of each event.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-logfmt/logfmt"
)

type pair struct {
	key, val string
}

// ---- the schema, from docs/logging.md ------------------------------------------

type eventDoc struct {
	keys   []string // in order, "event" first
	always map[string]bool
}

// The "Key types" table: | type | `key`, `key` ... | form |.
var (
	typeRowRe = regexp.MustCompile("^\\| (count|Unix time|word|hex|address|text) \\| ([^|]*) \\|")
	keyNameRe = regexp.MustCompile("`([a-z][a-z0-9_]*)`")
	typeForms = map[string]*regexp.Regexp{
		"count":     regexp.MustCompile(`^[0-9]+$`),
		"Unix time": regexp.MustCompile(`^[0-9]+$`),
		"word":      regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`),
		"hex":       regexp.MustCompile(`^[0-9a-f]*$`),
		"address":   regexp.MustCompile(`^[^ ]+( [^ ]+)*$`),
		"text":      regexp.MustCompile(`(?s)^.*$`),
	}
	keyTypes = map[string]string{}
)

func readTypes(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		m := typeRowRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		for _, k := range keyNameRe.FindAllStringSubmatch(m[2], -1) {
			if keyTypes[k[1]] != "" {
				return fmt.Errorf("%s: key %s has two types", path, k[1])
			}
			keyTypes[k[1]] = m[1]
		}
	}
	if len(keyTypes) == 0 {
		return fmt.Errorf("%s: no \"Key types\" table", path)
	}
	return nil
}

var (
	headingRe = regexp.MustCompile(`^#{2,3} `)
	eventRe   = regexp.MustCompile("event=([a-z_]+)")
	keyRowRe  = regexp.MustCompile("^\\| `([a-z][a-z0-9_]*)` \\| ([^|]*) \\|")
)

// A section whose heading names events (## event=start and event=reload)
// documents them with its first table headed "| key | present | value |".
// A row whose "present" cell names events (`event=reload` ...) is a key
// of those events only.
func readDocs(path string) (map[string]*eventDoc, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	docs := map[string]*eventDoc{}
	var cur []string
	var table map[string]*eventDoc
	inTable, done := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if headingRe.MatchString(line) {
			if strings.HasPrefix(line, "## ") {
				cur, inTable, done = nil, false, false
				for _, m := range eventRe.FindAllStringSubmatch(line, -1) {
					cur = append(cur, m[1])
				}
			}
			continue
		}
		if len(cur) == 0 || done {
			continue
		}
		if !inTable {
			if strings.HasPrefix(line, "| key | present | value |") {
				inTable = true
				table = map[string]*eventDoc{}
				for _, e := range cur {
					table[e] = &eventDoc{always: map[string]bool{}}
				}
			}
			continue
		}
		if strings.HasPrefix(line, "| ---") {
			continue
		}
		m := keyRowRe.FindStringSubmatch(line)
		if m == nil {
			// The table ended.
			for _, e := range cur {
				if docs[e] != nil {
					return nil, fmt.Errorf("%s: event %s documented twice", path, e)
				}
				docs[e] = table[e]
			}
			inTable, done = false, true
			continue
		}
		only := map[string]bool{}
		for _, o := range eventRe.FindAllStringSubmatch(m[2], -1) {
			if table[o[1]] == nil {
				return nil, fmt.Errorf("%s: key %s: event=%s is not one of this section's", path, m[1], o[1])
			}
			only[o[1]] = true
		}
		for e, d := range table {
			if len(only) > 0 && !only[e] {
				continue
			}
			for _, k := range d.keys {
				if k == m[1] {
					return nil, fmt.Errorf("%s: key %s twice in the table of %v", path, k, cur)
				}
			}
			d.keys = append(d.keys, m[1])
			if strings.TrimSpace(m[2]) == "always" {
				d.always[m[1]] = true
			}
		}
	}
	if inTable {
		for _, e := range cur {
			docs[e] = table[e]
		}
	}
	for e, d := range docs {
		if len(d.keys) == 0 || d.keys[0] != "event" {
			return nil, fmt.Errorf("%s: the key table of event=%s does not start with `event`", path, e)
		}
	}
	if err := readTypes(path); err != nil {
		return nil, err
	}
	for e, d := range docs {
		for _, k := range d.keys {
			if keyTypes[k] == "" {
				return nil, fmt.Errorf("%s: key %s of event=%s is not in the \"Key types\" table", path, k, e)
			}
		}
	}
	return docs, sc.Err()
}

// ---- reading one line ------------------------------------------------------------

// go-logfmt's reading.
func readGo(text string) ([]pair, error) {
	dec := logfmt.NewDecoder(strings.NewReader(text))
	var out []pair
	n := 0
	for dec.ScanRecord() {
		n++
		for dec.ScanKeyval() {
			out = append(out, pair{string(dec.Key()), string(dec.Value())})
		}
	}
	if err := dec.Err(); err != nil {
		return nil, err
	}
	if n != 1 {
		return nil, fmt.Errorf("go-logfmt read %d records", n)
	}
	return out, nil
}

func isKeyByte(c byte, first bool) bool {
	return c >= 'a' && c <= 'z' || !first && (c >= '0' && c <= '9' || c == '_')
}

func isBareByte(c byte) bool {
	return c > ' ' && c < 0x7f && c != '=' && c != '"' && c != '\\'
}

// The grammar docs/logging.md promises.
func readStrict(text string) ([]pair, error) {
	var out []pair
	i := 0
	for i < len(text) {
		if len(out) > 0 {
			if text[i] != ' ' {
				return nil, fmt.Errorf("col %d: pairs not separated by one space", i+1)
			}
			i++
		}
		k := i
		for i < len(text) && isKeyByte(text[i], i == k) {
			i++
		}
		if i == k || i >= len(text) || text[i] != '=' {
			return nil, fmt.Errorf("col %d: expected KEY= ([a-z][a-z0-9_]*)", k+1)
		}
		key := text[k:i]
		i++
		if i < len(text) && text[i] == '"' {
			v, n, err := readQuoted(text[i:])
			if err != nil {
				return nil, fmt.Errorf("col %d: %s=: %v", i+1, key, err)
			}
			out = append(out, pair{key, v})
			i += n
			continue
		}
		v := i
		for i < len(text) && text[i] != ' ' {
			if !isBareByte(text[i]) {
				return nil, fmt.Errorf("col %d: %s=: byte 0x%02x in a bare value", i+1, key, text[i])
			}
			i++
		}
		if i == v {
			return nil, fmt.Errorf("col %d: %s=: empty bare value", i+1, key)
		}
		out = append(out, pair{key, text[v:i]})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty line")
	}
	return out, nil
}

// A quoted value at the start of s: its decoded text and its length.
func readQuoted(s string) (string, int, error) {
	i := 1
	for {
		if i >= len(s) {
			return "", 0, fmt.Errorf("unterminated quote")
		}
		c := s[i]
		switch {
		case c == '"':
			body := s[:i+1]
			var v string
			if err := json.Unmarshal([]byte(body), &v); err != nil {
				return "", 0, fmt.Errorf("not a JSON string: %v", err)
			}
			if i+1 < len(s) && s[i+1] != ' ' {
				return "", 0, fmt.Errorf("no space after the closing quote")
			}
			return v, i + 1, nil
		case c == '\\':
			if i+1 >= len(s) {
				return "", 0, fmt.Errorf("dangling backslash")
			}
			switch s[i+1] {
			case '"', '\\', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(s) || s[i+2:i+4] != "00" || !isLowerHex(s[i+4]) || !isLowerHex(s[i+5]) {
					return "", 0, fmt.Errorf("escape other than \\u00xx (lower-case hex)")
				}
				i += 6
			default:
				return "", 0, fmt.Errorf("escape \\%c is not one of \\\" \\\\ \\n \\r \\t \\u00xx", s[i+1])
			}
		case c < ' ' || c == 0x7f:
			return "", 0, fmt.Errorf("raw control byte 0x%02x inside quotes", c)
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError {
				return "", 0, fmt.Errorf("raw byte 0x%02x that is not well-formed UTF-8", c)
			}
			if r < 0xa0 {
				return "", 0, fmt.Errorf("raw C1 control U+%04X", r)
			}
			i += n
		}
	}
}

func isLowerHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f'
}

// One logfmt text: both readings, then the schema.
func checkText(text string, docs map[string]*eventDoc) error {
	if !utf8.ValidString(text) {
		return fmt.Errorf("the line is not valid UTF-8")
	}
	goPairs, goErr := readGo(text)
	strict, err := readStrict(text)
	if goErr != nil && err != nil {
		return fmt.Errorf("go-logfmt: %v; strict reader: %v", goErr, err)
	}
	if goErr != nil {
		return fmt.Errorf("go-logfmt: %v", goErr)
	}
	if err != nil {
		return fmt.Errorf("strict reader (go-logfmt accepts it): %v", err)
	}
	if len(goPairs) != len(strict) {
		return fmt.Errorf("go-logfmt read %d pairs, the strict reader %d", len(goPairs), len(strict))
	}
	for i := range strict {
		if goPairs[i] != strict[i] {
			return fmt.Errorf("pair %d: go-logfmt read %q=%q, the strict reader %q=%q",
				i+1, goPairs[i].key, goPairs[i].val, strict[i].key, strict[i].val)
		}
	}
	if strict[0].key != "event" {
		return fmt.Errorf("the first key is %q, not event", strict[0].key)
	}
	if docs == nil {
		return nil
	}
	ev := strict[0].val
	d := docs[ev]
	if d == nil {
		return fmt.Errorf("event=%s has no key table in docs/logging.md", ev)
	}
	pos := map[string]int{}
	for i, k := range d.keys {
		pos[k] = i
	}
	seen := map[string]bool{}
	last := 0
	truncated, msgForm := false, false
	for i, p := range strict[1:] {
		if seen[p.key] {
			return fmt.Errorf("key %s twice", p.key)
		}
		seen[p.key] = true
		if p.key == "truncated" {
			if p.val != "1" || i != len(strict)-2 {
				return fmt.Errorf("truncated=%s not as the last pair", p.val)
			}
			truncated = true
			continue
		}
		at, ok := pos[p.key]
		if !ok {
			return fmt.Errorf("key %s is not documented for event=%s", p.key, ev)
		}
		if t := keyTypes[p.key]; !typeForms[t].MatchString(p.val) {
			return fmt.Errorf("%s=%q is not a %s (docs/logging.md, Key types)", p.key, p.val, t)
		}
		if at < last {
			return fmt.Errorf("key %s comes after %s: docs/logging.md has the other order", p.key, d.keys[last])
		}
		last = at
	}
	if seen["msg"] {
		// The msg form: event=NAME msg=TEXT and nothing else.
		if len(strict) != 2 && !(truncated && len(strict) == 3) {
			return fmt.Errorf("event=%s: msg with other keys", ev)
		}
		msgForm = true
	}
	if !truncated && !msgForm {
		for _, k := range d.keys {
			if d.always[k] && !seen[k] && k != "event" && k != "msg" {
				return fmt.Errorf("event=%s without %s, documented as always there", ev, k)
			}
		}
	}
	return nil
}

// ---- files --------------------------------------------------------------------

var (
	mirrorRe = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z starttlsd\[[0-9]+\]: `)
	syslogRe = regexp.MustCompile(`^<[0-9]+>[^\n]*? starttlsd\[[0-9]+\]: `)
)

// path -> "OFFSET HEAD": read up to OFFSET, HEAD identifies the file's
// first bytes then (a truncated or rewritten file starts over).
type state map[string]string

func fileHead(data []byte, off int) string {
	n := off
	if n > 256 {
		n = 256
	}
	h := sha256.Sum256(data[:n])
	return hex.EncodeToString(h[:8]) + ":" + strconv.Itoa(n)
}

func checkFiles(paths []string, docs map[string]*eventDoc, statePath string) int {
	st := state{}
	if statePath != "" {
		if b, err := os.ReadFile(statePath); err == nil {
			_ = json.Unmarshal(b, &st)
		}
	}
	nlines, nerr := 0, 0
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			fmt.Printf("%s: %v\n", path, err)
			nerr++
			continue
		}
		abs, _ := filepath.Abs(path)
		start := 0
		if prev, ok := st[abs]; ok {
			var off int
			var head string
			if _, err := fmt.Sscanf(prev, "%d %s", &off, &head); err == nil &&
				off <= len(data) && fileHead(data, off) == head {
				start = off
			}
		}
		// Only whole lines: one being written is read next time.
		end := bytes.LastIndexByte(data, '\n') + 1
		if end < start {
			end = start
		}
		lineNo := bytes.Count(data[:start], []byte{'\n'})
		for _, raw := range bytes.SplitAfter(data[start:end], []byte{'\n'}) {
			if len(raw) == 0 {
				continue
			}
			lineNo++
			line := string(bytes.TrimSuffix(raw, []byte{'\n'}))
			var text string
			if m := mirrorRe.FindStringIndex(line); m != nil {
				text = line[m[1]:]
			} else if m := syslogRe.FindStringIndex(line); m != nil {
				text = line[m[1]:]
			} else {
				if strings.Contains(line, "event=") {
					fmt.Printf("%s:%d: event= outside a starttlsd log line: %q\n", path, lineNo, line)
					nerr++
				}
				continue
			}
			nlines++
			if err := checkText(text, docs); err != nil {
				fmt.Printf("%s:%d: %v: %q\n", path, lineNo, err, text)
				nerr++
			}
		}
		st[abs] = fmt.Sprintf("%d %s", end, fileHead(data, end))
	}
	if statePath != "" {
		b, _ := json.Marshal(st)
		tmp := fmt.Sprintf("%s.%d", statePath, os.Getpid())
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			fmt.Printf("%s: %v\n", statePath, err)
			nerr++
		} else if err := os.Rename(tmp, statePath); err != nil {
			fmt.Printf("%s: %v\n", statePath, err)
			nerr++
		}
	}
	if nerr > 0 {
		fmt.Printf("%d lines read, %d errors\n", nlines, nerr)
		return 1
	}
	fmt.Printf("%d lines ok\n", nlines)
	return 0
}

// ---- the code side: which keys proxy/*.c writes, per event ---------------------

var (
	codeTokRe = regexp.MustCompile(`log_begin\(&\w+, (?:"([a-z_]+)"|(\w+))\)` +
		`|log_(?:str|u64|int|bytes|fmt)\(&\w+, "([a-z][a-z0-9_]*)"` +
		`|log_emit\(` +
		`|log_msg\( ?LOG_[A-Z]+, "([a-z_]+)"` +
		`|log_fatal\(` +
		`|log_start\( ?"([a-z_]+)"\)` +
		`|\nlog_start\(const char \*\w+\)`)
)

// Key sequences per event, one per log_begin ... log_emit stretch; the
// events log_start("X") is called with get log_start's own stretch.
func codeKeys(dir string) (map[string][][]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.c"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("%s: no *.c", dir)
	}
	out := map[string][][]string{}
	var startSeqs [][]string
	var startEvents []string
	for _, f := range files {
		if filepath.Base(f) == "log.c" {
			continue // the writer itself: log_msg and log_fatal are below
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		src := regexp.MustCompile(`[ \t]*\n[ \t]*`).ReplaceAllString(string(b), "\n")
		src = strings.ReplaceAll(src, "(\n", "(")
		src = strings.ReplaceAll(src, ",\n", ", ")
		var cur string
		var seq []string
		inStart := false
		for _, m := range codeTokRe.FindAllStringSubmatch(src, -1) {
			switch {
			case strings.HasPrefix(m[0], "\nlog_start("):
				inStart = true // the definition
			case strings.HasPrefix(m[0], "log_begin"):
				cur, seq = m[1], nil
				if m[1] == "" {
					cur = "@" + m[2]
				}
			case strings.HasPrefix(m[0], "log_emit"):
				if cur == "" {
					return nil, fmt.Errorf("%s: log_emit without log_begin", f)
				}
				if strings.HasPrefix(cur, "@") {
					if !inStart {
						return nil, fmt.Errorf("%s: log_begin with a variable event outside log_start", f)
					}
					startSeqs = append(startSeqs, seq)
					inStart = false
				} else {
					out[cur] = append(out[cur], seq)
				}
				cur, seq = "", nil
			case m[3] != "":
				if cur == "" {
					return nil, fmt.Errorf("%s: key %s outside log_begin ... log_emit", f, m[3])
				}
				seq = append(seq, m[3])
			case m[4] != "":
				out[m[4]] = append(out[m[4]], []string{"msg"})
			case m[0] == "log_fatal(":
				out["fatal"] = append(out["fatal"], []string{"msg"})
			case m[5] != "":
				startEvents = append(startEvents, m[5])
			}
		}
	}
	if len(startEvents) > 0 && len(startSeqs) == 0 {
		return nil, fmt.Errorf("log_start is called but its definition was not found")
	}
	for _, e := range startEvents {
		out[e] = append(out[e], startSeqs...)
	}
	return out, nil
}

func checkCode(dir string, docs map[string]*eventDoc) int {
	code, err := codeKeys(dir)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	nerr := 0
	var events []string
	for e := range code {
		events = append(events, e)
	}
	sort.Strings(events)
	for _, e := range events {
		d := docs[e]
		if d == nil {
			fmt.Printf("event=%s: the code writes it, docs/logging.md has no key table for it\n", e)
			nerr++
			continue
		}
		pos := map[string]int{}
		for i, k := range d.keys {
			pos[k] = i
		}
		used := map[string]bool{"event": true, "truncated": true}
		for _, seq := range code[e] {
			last := 0
			for _, k := range seq {
				used[k] = true
				at, ok := pos[k]
				if !ok {
					fmt.Printf("event=%s: the code writes %s, docs/logging.md does not list it\n", e, k)
					nerr++
					continue
				}
				if at < last {
					fmt.Printf("event=%s: the code writes %s after %s, docs/logging.md has the other order\n", e, k, d.keys[last])
					nerr++
				}
				if at > last {
					last = at
				}
			}
		}
		for _, k := range d.keys {
			if !used[k] {
				fmt.Printf("event=%s: docs/logging.md lists %s, the code never writes it\n", e, k)
				nerr++
			}
		}
	}
	for e := range docs {
		if code[e] == nil {
			fmt.Printf("event=%s: documented, but the code never writes it\n", e)
			nerr++
		}
	}
	if nerr > 0 {
		return 1
	}
	fmt.Printf("%d events: keys and order as documented\n", len(events))
	return 0
}

func main() {
	docsPath := flag.String("docs", "", "docs/logging.md (the schema)")
	statePath := flag.String("state", "", "remember how far each file was read")
	line := flag.String("line", "", "check this one logfmt text")
	code := flag.String("code", "", "compare the docs with the keys proxy/*.c in this directory writes")
	dump := flag.Bool("dump", false, "print the documented keys of each event")
	flag.Parse()
	var docs map[string]*eventDoc
	if *docsPath != "" {
		var err error
		if docs, err = readDocs(*docsPath); err != nil {
			fmt.Println(err)
			os.Exit(2)
		}
	}
	switch {
	case *dump:
		var events []string
		for e := range docs {
			events = append(events, e)
		}
		sort.Strings(events)
		for _, e := range events {
			fmt.Println(e, strings.Join(docs[e].keys, " "))
		}
	case *code != "":
		if docs == nil {
			fmt.Println("-code needs -docs")
			os.Exit(2)
		}
		os.Exit(checkCode(*code, docs))
	case *line != "":
		if err := checkText(*line, docs); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("ok")
	default:
		os.Exit(checkFiles(flag.Args(), docs, *statePath))
	}
}
