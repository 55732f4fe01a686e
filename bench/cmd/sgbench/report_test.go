package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadFixture(t *testing.T) (results, map[string]map[string]string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "raw.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := readRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	na, err := os.ReadFile(filepath.Join("testdata", "na.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	return r, readNA(na)
}

func row(t *testing.T, table, title, peer string) []string {
	t.Helper()
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(line, " | ")
		if len(cells) > 2 && strings.HasPrefix(cells[0], "| "+title) && cells[1] == peer {
			return cells
		}
	}
	t.Fatalf("no row %q/%q in\n%s", title, peer, table)
	return nil
}

func TestReportTable(t *testing.T) {
	r, na := loadFixture(t)
	var b bytes.Buffer
	writeTable(&b, r, na)
	table := b.String()
	for _, tt := range []struct {
		name, title, peer string
		col               int
		want              string
	}{
		{"median of rounds", "1. ", "sealgate", 2, "10000"},
		{"spread is min–max", "1. ", "sealgate", 4, "8000–12000"},
		// Per-round ratios 0.5, 0.8, 0.75: the median of ratios, not the
		// ratio of medians (0.625).
		{"ratio to nginx per round", "1. ", "sealgate", 5, "0.75 (0.50–0.80)"},
		{"nginx is the reference", "1. ", "nginx", 5, "1"},
		// Per core: nginx 20000/1, 10000/0.5, 16000/0.8 = 20000 each round;
		// sealgate 20000, 8000, 20000 → ratios 1, 0.4, 1.
		{"proxy CPU", "1. ", "sealgate", 6, "0.60"},
		{"per core", "1. ", "sealgate", 7, "20000"},
		{"per-core ratio to nginx", "1. ", "sealgate", 8, "1.00 (0.40–1.00)"},
		{"latency columns", "1. ", "sealgate", 10, "20.0"},
		{"added latency over upstream", "5. ", "sealgate", 2, "3.00"},
		{"upstream latency is absolute", "5. ", "upstream", 3, "ms p99 (absolute)"},
		{"memory per connection", "7. ", "sealgate", 3, "MiB PSS with 9800 conns (30.0 KiB/conn over the idle process)"},
		{"unavailable row keeps its reason", "6b. ", "sealgate", 2, "not available: sealed request refused: 404 Not Found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cells := row(t, table, tt.title, tt.peer)
			if got := cells[tt.col]; got != tt.want {
				t.Errorf("column %d = %q, want %q", tt.col, got, tt.want)
			}
		})
	}
	if strings.Contains(table, "| 2. ") {
		t.Errorf("a scenario without figures has a row:\n%s", table)
	}
}

func TestReadRawRejectsMalformedLines(t *testing.T) {
	for _, tt := range []struct{ name, in string }{
		{"too few fields", "1\ts1_h1\tnginx\trps\n"},
		{"round not a number", "x\ts1_h1\tnginx\trps\t1\n"},
		{"value not a number", "1\ts1_h1\tnginx\trps\tfast\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := readRaw([]byte(tt.in)); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestReportWritesPageAndChart(t *testing.T) {
	dir := t.TempDir()
	md, png := filepath.Join(dir, "r.md"), filepath.Join(dir, "r.png")
	err := cmdReport([]string{"-raw", "testdata/raw.tsv", "-na", "testdata/na.tsv", "-md", md, "-png", png, "-title", "t"})
	if err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(page, []byte("![chart](r.png)")) || !bytes.Contains(page, []byte("| 1. 1 KiB JSON")) {
		t.Errorf("page lacks the chart or the table:\n%s", page)
	}
	img, err := os.ReadFile(png)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(img, []byte("\x89PNG")) {
		t.Error("chart is not a PNG")
	}
}

// FuzzReadRaw: arbitrary raw files give figures or an error, and the table
// renders whatever was read.
func FuzzReadRaw(f *testing.F) {
	raw, err := os.ReadFile(filepath.Join("testdata", "raw.tsv"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add([]byte("1\ts5_fixed\tsealgate\tp99_ms\tNaN\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := readRaw(data)
		if err != nil {
			return
		}
		var b bytes.Buffer
		writeTable(&b, r, readNA(data))
	})
}
