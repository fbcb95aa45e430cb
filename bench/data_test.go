package bench

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// writeRandom writes n files of size deterministic random (incompressible)
// bytes into dir, named by a zero-padded number.
func writeRandom(tb testing.TB, dir string, n, size int, seed uint64) {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	buf := make([]byte, size)
	for i := range n {
		r.Read(buf)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%05d.bin", i)), buf, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// writeLedger writes a CSV ledger of size bytes (dates, account and
// transaction ids, amounts, currencies, balances, descriptions; the shape of
// crypto's benchmark data, which zstd shrinks to about a quarter).
func writeLedger(tb testing.TB, path string, size int64) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	r := rand.New(rand.NewPCG(11, 42))
	currencies := []string{"CAD", "USD", "EUR", "GBP", "JPY", "CHF"}
	descriptions := []string{
		"Virement Interac reçu", "Paiement facture Hydro-Québec", "Achat carte débit - Metro",
		"Dépôt de paie", "Frais mensuels", "Retrait GAB", "Paiement hypothécaire",
		"Remboursement TPS/TVH", "Prélèvement assurance auto", "Achat en ligne - Amazon.ca",
	}
	written := int64(0)
	header := "date,account_id,transaction_id,amount,currency,balance,description\n"
	n, _ := w.WriteString(header)
	written += int64(n)
	day := time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)
	balance := int64(1_000_000)
	line := make([]byte, 0, 160)
	for i := int64(0); written < size; i++ {
		if r.IntN(40) == 0 {
			day = day.AddDate(0, 0, 1)
		}
		cents := int64(r.IntN(500000) - 250000)
		balance += cents
		line = day.AppendFormat(line[:0], "2006-01-02")
		line = append(line, ",CA"...)
		line = strconv.AppendInt(line, 10000000+int64(r.IntN(5000)), 10)
		line = append(line, ",TX"...)
		line = strconv.AppendInt(line, 700000000000+i, 10)
		line = append(line, ',')
		line = appendCents(line, cents)
		line = append(line, ',')
		line = append(line, currencies[r.IntN(len(currencies))]...)
		line = append(line, ',')
		line = appendCents(line, balance)
		line = append(line, ',')
		line = append(line, descriptions[r.IntN(len(descriptions))]...)
		line = append(line, '\n')
		if rest := size - written; int64(len(line)) > rest {
			line = line[:rest]
		}
		n, err := w.Write(line)
		if err != nil {
			tb.Fatal(err)
		}
		written += int64(n)
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
}

// appendCents appends cents as a decimal amount with two decimals.
func appendCents(b []byte, cents int64) []byte {
	if cents < 0 {
		b = append(b, '-')
		cents = -cents
	}
	b = strconv.AppendInt(b, cents/100, 10)
	b = append(b, '.', byte('0'+cents%100/10), byte('0'+cents%10))
	return b
}
