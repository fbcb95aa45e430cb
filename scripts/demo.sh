#!/usr/bin/env bash
# voyageur demo: a fintech's bucket in "AWS us-east-1" (a MinIO on loopback)
# replicated, encrypted, to "OVHcloud Beauharnois" (a second MinIO on
# loopback); then the source goes down and everything comes back from Canada
# with the offline identity alone, every SHA-256 checked.
#
# Run it with `make demo`, which builds bin/voyageur and installs the pinned
# MinIO server build, awscli, age, zstd, xxd and openssl. Knobs (environment):
#   DEMO_ARCHIVE_MIB   size of the large archive (default 300: multipart)
#   DEMO_LEDGER_DAYS   daily ledger CSVs (default 30)
#   DEMO_LEDGER_ROWS   rows per ledger (default 2000)
#   DEMO_STATEMENTS    client statements (default 20)
#   DEMO_KEEP=1        keep the working directory for a look afterwards
#   VOYAGEUR_BIN, VOYAGEUR_MINIO_BIN, AWS_BIN   the binaries to use
# Both servers listen on 127.0.0.1 only, and are stopped (and the working
# directory removed) on any exit, Ctrl-C included.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
started=$SECONDS

archive_mib=${DEMO_ARCHIVE_MIB:-300}
ledger_days=${DEMO_LEDGER_DAYS:-30}
ledger_rows=${DEMO_LEDGER_ROWS:-2000}
statements=${DEMO_STATEMENTS:-20}

say() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# --- tools -----------------------------------------------------------------

voyageur=${VOYAGEUR_BIN:-$root/bin/voyageur}
[[ -x $voyageur ]] || die "no voyageur binary at $voyageur (run: make demo)"

minio=${VOYAGEUR_MINIO_BIN:-}
if [[ -z $minio || ! -x $minio ]]; then
	minio=$(command -v minio || true)
	gobin_minio="$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin/minio"
	[[ -n $minio ]] || minio=$gobin_minio
fi
[[ -x $minio ]] || die "no MinIO server binary (looked at \$VOYAGEUR_MINIO_BIN, PATH, GOPATH/bin); run: make demo"

# Debian's awscli first, as in the tests: every machine seeds with the same
# client.
aws_bin=${AWS_BIN:-}
[[ -n $aws_bin ]] || { [[ -x /usr/bin/aws ]] && aws_bin=/usr/bin/aws; } || aws_bin=$(command -v aws || true)
[[ -n $aws_bin ]] || die "no aws CLI (Debian: apt-get install awscli; make demo installs it)"
for t in age zstd openssl sha256sum; do
	command -v "$t" >/dev/null || die "$t is missing (make demo installs it)"
done
if command -v xxd >/dev/null; then hex() { xxd "$@"; }; else hex() { od -A x -t x1z -v "$@"; }; fi

# --- working directory, servers, cleanup -----------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/voyageur-demo.XXXXXX")
pids=()

stop_servers() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	pids=()
}

cleanup() {
	local code=$?
	stop_servers
	if [[ ${DEMO_KEEP:-} == 1 ]]; then
		printf 'demo: kept %s\n' "$work" >&2
	else
		rm -rf "$work"
	fi
	if ((code != 0)); then
		printf 'demo: FAILED (exit %d) after %ds; servers stopped, temporary files removed\n' "$code" $((SECONDS - started)) >&2
	fi
	exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Loopback only, and no proxy for it: a corporate proxy must not see (or
# break) traffic between the demo's own processes.
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

# free_port prints a loopback port nobody answers on. The small race with
# another process binding it is covered by start_minio's retries.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}

# live asks MinIO's liveness probe on port $1 (or the path $2: serve's
# /healthz), with plain bash.
live() {
	local status
	exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "${2:-/minio/health/live}" >&3
	IFS= read -r -t 5 status <&3 || status=
	exec 3<&- 3>&-
	[[ $status == *" 200 "* ]]
}

random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

# start_minio NAME USER PASSWORD: starts a server and sets $port to its
# port. (Not a $(...) function: the server's pid must land in this shell's
# pids, for the cleanup.)
start_minio() {
	local name=$1 user=$2 password=$3 console attempt i
	mkdir -p "$work/$name/data"
	for attempt in 1 2 3; do
		port=$(free_port)
		console=$(free_port)
		MINIO_ROOT_USER=$user MINIO_ROOT_PASSWORD=$password MINIO_BROWSER=off MINIO_UPDATE=off \
			MINIO_CI_CD=1 MINIO_REGION=us-east-1 GOMAXPROCS=2 \
			"$minio" server --quiet --address "127.0.0.1:$port" --console-address "127.0.0.1:$console" \
			--certs-dir "$work/$name/certs" "$work/$name/data" >"$work/$name/minio.log" 2>&1 &
		pids+=($!)
		for ((i = 0; i < 120; i++)); do
			if live "$port" 2>/dev/null; then
				return
			fi
			kill -0 "${pids[-1]}" 2>/dev/null || break
			sleep 0.5
		done
		kill "${pids[-1]}" 2>/dev/null || true
		wait "${pids[-1]}" 2>/dev/null || true
		unset 'pids[-1]'
		printf 'demo: MinIO %s did not start (attempt %d); log tail:\n' "$name" "$attempt" >&2
		tail -n 20 "$work/$name/minio.log" >&2 || true
	done
	die "could not start the $name MinIO server"
}

# The aws CLI, for one side: its own config (path-style addressing), static
# credentials, nothing from the user's ~/.aws. A CA bundle set for the host
# stays in effect.
cat >"$work/aws-config" <<'EOF'
[default]
s3 =
    addressing_style = path
EOF
aws_at() {
	local url=$1 user=$2 password=$3
	shift 3
	env -u AWS_PROFILE -u AWS_SESSION_TOKEN -u AWS_ENDPOINT_URL -u AWS_ENDPOINT_URL_S3 \
		AWS_ACCESS_KEY_ID="$user" AWS_SECRET_ACCESS_KEY="$password" AWS_DEFAULT_REGION=us-east-1 \
		AWS_CONFIG_FILE="$work/aws-config" AWS_SHARED_CREDENTIALS_FILE="$work/no-credentials" \
		AWS_EC2_METADATA_DISABLED=true AWS_PAGER= \
		"$aws_bin" --endpoint-url "$url" "$@"
}

# The credentials reach voyageur through the environment, the way the
# config's ${VARS} are meant to be used; the config file holds none.
export DEMO_SOURCE_ACCESS_KEY=fintech-us-east-1 DEMO_SOURCE_SECRET_KEY
export DEMO_CANADA_ACCESS_KEY=replicator-bhs DEMO_CANADA_SECRET_KEY
DEMO_SOURCE_SECRET_KEY=$(random_hex 20)
DEMO_CANADA_SECRET_KEY=$(random_hex 20)
src() { aws_at "$source_url" "$DEMO_SOURCE_ACCESS_KEY" "$DEMO_SOURCE_SECRET_KEY" "$@"; }
canada() { aws_at "$canada_url" "$DEMO_CANADA_ACCESS_KEY" "$DEMO_CANADA_SECRET_KEY" "$@"; }

say "Starting two MinIO servers on loopback: \"source\" stands in for AWS us-east-1, \"canada\" for OVHcloud Beauharnois"
start_minio source "$DEMO_SOURCE_ACCESS_KEY" "$DEMO_SOURCE_SECRET_KEY"
source_url=http://127.0.0.1:$port
start_minio canada "$DEMO_CANADA_ACCESS_KEY" "$DEMO_CANADA_SECRET_KEY"
canada_url=http://127.0.0.1:$port
note "source (AWS us-east-1 stand-in):    $source_url"
note "canada (OVH Beauharnois stand-in):  $canada_url"
note "working directory:                  $work"

# --- seed ------------------------------------------------------------------

say "Seeding the source bucket fintech-prod: $ledger_days daily ledgers, $statements client statements, a ${archive_mib} MiB archive"
seed=$work/seed
mkdir -p "$seed/statements" "$seed/archive"

# Ledgers: deterministic rows (awk's generator seeded by the day), so every
# run shows the same data.
for ((d = 1; d <= ledger_days; d++)); do
	day=$(date -u -d "2026-10-01 + $d days" +%F)
	mkdir -p "$seed/ledgers/${day:0:4}/${day:5:2}"
	awk -v day="$day" -v seed="$d" -v rows="$ledger_rows" 'BEGIN {
		srand(seed)
		split("Desjardins,Royal Bank of Canada,Shopify Payments,Hydro-Quebec,Air Canada,Loblaw Companies,TELUS,Rogers Communications,Receiver General for Canada,Payroll - ADP Canada,Stripe Canada,Interac e-Transfer,Bell Canada,Metro Inc,Canada Post", cp, ",")
		ref = day; gsub(/-/, "", ref)
		print "date,account,counterparty,amount_cad,reference"
		for (i = 1; i <= rows; i++) {
			amount = (rand() < 0.35 ? 1 : -1) * (rand() < 0.9 ? rand() * 900 : rand() * 250000)
			printf "%s,CA-%04d-%06d,%s,%.2f,TX%s%06d\n", day, int(rand() * 40), int(rand() * 1000000), cp[1 + int(rand() * 15)], amount, ref, i
		}
	}' >"$seed/ledgers/${day:0:4}/${day:5:2}/ledger-$day.csv"
done

# Statements: a PDF-looking header and trailer around incompressible bytes,
# the way real (already compressed) PDFs behave.
clients=(acme-logistics boreal-energy cascade-dental northwind-foods laurentian-ventures)
for ((s = 0; s < statements; s++)); do
	client=${clients[s % ${#clients[@]}]}
	month=$(printf '%02d' $((7 + s / ${#clients[@]} % 6)))
	f=$seed/statements/$client/statement-2026-$month.pdf
	mkdir -p "$(dirname "$f")"
	{
		printf '%%PDF-1.7\n%% Statement of account: %s, 2026-%s (voyageur demo)\n' "$client" "$month"
		head -c $((40960 + RANDOM * 4)) /dev/urandom
		printf '\n%%%%EOF\n'
	} >"$f"
done

head -c "${archive_mib}M" /dev/urandom >"$seed/archive/ledgers-2026-q3.tar.zst"

# The checksums a restore must reproduce, recorded before anything moves.
(cd "$seed" && find . -type f -printf '%P\0' | sort -z | xargs -0 sha256sum) >"$work/SHA256SUMS"
files=$(wc -l <"$work/SHA256SUMS")
src s3 mb s3://fintech-prod >/dev/null
src s3 cp --recursive --only-show-errors "$seed" s3://fintech-prod/
src s3 ls --recursive --summarize --human-readable s3://fintech-prod >"$work/source-listing.txt"
note "the source bucket, as the fintech's engineers see it (a few of its $files objects):"
grep -m 3 ' ledgers/' "$work/source-listing.txt" | sed 's/^/      /'
grep -m 2 ' statements/' "$work/source-listing.txt" | sed 's/^/      /'
grep -m 1 ' archive/' "$work/source-listing.txt" | sed 's/^/      /'
tail -n 2 "$work/source-listing.txt" | sed 's/^ */      /'

# --- keys and config -------------------------------------------------------

say "Making the key pair: the identity goes to the offline kit, the replicating host gets the public key only"
host=$work/replicating-host
kit=$work/offline-kit
mkdir -p "$host" "$kit"
chmod 700 "$host" "$kit"
"$voyageur" keygen -o "$kit/identity.txt" 2>"$work/keygen.txt"
recipient=$(sed -n 's/^Public key: //p' "$work/keygen.txt")
[[ $recipient == age1* ]] || die "keygen printed no recipient: $(cat "$work/keygen.txt")"
head -c 32 /dev/urandom >"$host/names.key"
chmod 600 "$host/names.key"
cp -p "$host/names.key" "$kit/names.key" # the kit keeps a copy to find replicas by name
note "voyageur keygen -o offline-kit/identity.txt   ->  Public key: $recipient"
note "head -c 32 /dev/urandom > names.key           (hides object names from the provider)"

canada_bucket=fintech-replica
canada s3 mb "s3://$canada_bucket" >/dev/null
cat >"$host/voyageur.yaml" <<EOF
# The replicating host's config. Secrets come from the environment.
journal: $host/journal.db
endpoints:
  # In production: {type: aws, region: us-east-1} with an instance role.
  aws-us-east-1: {type: aws, url: "$source_url", region: us-east-1, path_style: true, access_key: "\${DEMO_SOURCE_ACCESS_KEY}", secret_key: "\${DEMO_SOURCE_SECRET_KEY}"}
  # In production: {type: ovh, region: bhs, access_key: "\${OVH_ACCESS_KEY}", secret_key: "\${OVH_SECRET_KEY}"}
  # location: where this self-hosted stand-in is, for drill's residency report.
  ovh-bhs: {type: minio, url: "$canada_url", access_key: "\${DEMO_CANADA_ACCESS_KEY}", secret_key: "\${DEMO_CANADA_SECRET_KEY}", location: {country: CA, region: "Beauharnois (demo stand-in)"}}
jobs:
  - name: fintech-prod
    source: aws-us-east-1:fintech-prod
    destination: ovh-bhs:$canada_bucket/
    encryption:
      recipients: ["$recipient"]
      compression: zstd
      names: hashed
      name_secret_file: $host/names.key
    deletes: keep
    transfer: {part_size: 16MiB, concurrency: 8, memory: 256MiB}
EOF
note "the config ($host/voyageur.yaml):"
sed 's/^/      /' "$host/voyageur.yaml"

# --- sync --------------------------------------------------------------------

say "Replicating to Canada: encrypted (age + zstd), hashed names, ${archive_mib} MiB archive in resumable 16 MiB parts"
t0=$SECONDS
"$voyageur" sync -c "$host/voyageur.yaml"
note "first sync took $((SECONDS - t0))s"

say "A new day's ledger lands in the source; the next sync copies only that one"
day=$(date -u -d "2026-10-01 + $((ledger_days + 1)) days" +%F)
new_key=ledgers/${day:0:4}/${day:5:2}/ledger-$day.csv
mkdir -p "$seed/$(dirname "$new_key")"
{
	echo "date,account,counterparty,amount_cad,reference"
	echo "$day,CA-0007-431190,Receiver General for Canada,-18250.00,TX${day//-/}000001"
	echo "$day,CA-0012-220461,Shopify Payments,4312.77,TX${day//-/}000002"
} >"$seed/$new_key"
(cd "$seed" && sha256sum "$new_key") >>"$work/SHA256SUMS"
files=$((files + 1))
src s3 cp --only-show-errors "$seed/$new_key" "s3://fintech-prod/$new_key"
"$voyageur" sync -c "$host/voyageur.yaml"

# --- what the provider sees --------------------------------------------------

say "What the provider (OVHcloud) sees in $canada_bucket: opaque names, opaque bytes"
canada s3 ls --recursive "s3://$canada_bucket" >"$work/canada-listing.txt"
replicas=$(wc -l <"$work/canada-listing.txt")
head -n 6 "$work/canada-listing.txt" | sed 's/^/      /'
note "... $replicas objects in all. Names mentioning ledger, statement or archive: $(grep -ciE 'ledger|statement|archive|csv|pdf' "$work/canada-listing.txt" || true)"
first=$(awk 'NR == 1 {print $4}' "$work/canada-listing.txt")
canada s3api get-object --bucket "$canada_bucket" --key "$first" --range bytes=0-255 "$work/peek.bin" >/dev/null
note "the first 256 bytes of $first: an age header (one X25519 stanza, a MAC), then ciphertext:"
hex "$work/peek.bin" | sed 's/^/      /'
src_bytes=$(awk '{s += $3} END {print s}' <(src s3 ls --recursive s3://fintech-prod))
dst_bytes=$(awk '{s += $3} END {print s}' "$work/canada-listing.txt")
note "source bytes: $src_bytes; bytes stored in Canada: $dst_bytes (the ledgers compress, the archive cannot)"

# --- the outage --------------------------------------------------------------

say "Outage: the source (us-east-1) goes down, and the replicating host with its journal and name secret is lost"
kill "${pids[0]}"
wait "${pids[0]}" 2>/dev/null || true
if AWS_MAX_ATTEMPTS=1 src s3 ls s3://fintech-prod --cli-connect-timeout 2 >/dev/null 2>&1; then
	die "the source still answers"
fi
note "aws s3 ls s3://fintech-prod  ->  connection refused"
rm -f "$host/journal.db" "$host/names.key"
note "removed: the journal and names.key of the replicating host"

say "Restoring from Canada to a directory, with the config copy and the offline identity"
restored=$work/restored
cp "$host/voyageur.yaml" "$kit/voyageur.yaml"
t0=$SECONDS
"$voyageur" restore -c "$kit/voyageur.yaml" --job fintech-prod --identity "$kit/identity.txt" --to "$restored"
note "restore took $((SECONDS - t0))s"

say "Checking every restored file against the SHA-256 sums recorded at seeding"
(cd "$restored" && sha256sum --quiet -c "$work/SHA256SUMS")
got=$(cd "$restored" && find . -type f | wc -l)
((got == files)) || die "restored $got files, expected $files"
note "sha256sum -c: all $files files match, and nothing else was restored"

say "Recovery without voyageur: find a replica by name and decrypt it with the standard tools"
key=ledgers/2026/10/ledger-2026-10-15.csv
[[ -f $seed/$key ]] || key=$new_key
name=$(printf '%s' "$key" |
	openssl dgst -sha256 -mac HMAC -macopt hexkey:"$(od -An -v -tx1 "$kit/names.key" | tr -d ' \n')" |
	sed 's/.*= //; s/$/.age/')
note "HMAC-SHA256(names.key, \"$key\") = $name"
canada s3 cp --only-show-errors "s3://$canada_bucket/$name" "$work/replica.age"
note "age -d -i identity.txt $name | zstd -d:"
age -d -i "$kit/identity.txt" "$work/replica.age" | zstd -d -q >"$work/by-hand.csv"
head -n 3 "$work/by-hand.csv" | sed 's/^/      /'
want=$(awk -v k="$key" '$2 == k {print $1}' "$work/SHA256SUMS")
have=$(sha256sum <"$work/by-hand.csv" | cut -d' ' -f1)
[[ $want == "$have" ]] || die "$key decrypted by hand has SHA-256 $have, want $want"
note "SHA-256 matches the original: $have"

say "Failover: voyageur serve makes the Canadian replica a read-only S3 endpoint, decrypted on the fly"
# The applications' own key pair for the endpoint, from the environment
# like every secret; the kit's config gains a serve: section.
export DEMO_SERVE_ACCESS_KEY=fintech-apps DEMO_SERVE_SECRET_KEY
DEMO_SERVE_SECRET_KEY=$(random_hex 20)
serve_port=$(free_port)
serve_url=http://127.0.0.1:$serve_port
cat >>"$kit/voyageur.yaml" <<EOF
serve:
  listen: 127.0.0.1:$serve_port
  access_key: "\${DEMO_SERVE_ACCESS_KEY}"
  secret_key: "\${DEMO_SERVE_SECRET_KEY}"
  cache: $work/serve-cache.db
EOF
"$voyageur" serve -c "$kit/voyageur.yaml" --identity "$kit/identity.txt" >"$work/serve.log" 2>&1 &
pids+=($!)
for ((i = 0; i < 240; i++)); do
	live "$serve_port" /healthz 2>/dev/null && break
	kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/serve.log" >&2; die "voyageur serve exited"; }
	sleep 0.5
done
live "$serve_port" /healthz 2>/dev/null || { tail -n 20 "$work/serve.log" >&2; die "voyageur serve did not load its catalog"; }
note "voyageur serve -c offline-kit/voyageur.yaml --identity offline-kit/identity.txt  ->  $serve_url, catalog loaded"
apps() { aws_at "$serve_url" "$DEMO_SERVE_ACCESS_KEY" "$DEMO_SERVE_SECRET_KEY" "$@"; }
note "the applications change one endpoint URL, and the original names are back:"
note "aws s3 ls s3://fintech-prod/ledgers/2026/10/ (a few):"
apps s3 ls "s3://fintech-prod/ledgers/2026/10/" >"$work/served-listing.txt"
head -n 3 "$work/served-listing.txt" | sed 's/^/      /'
failover_key=ledgers/2026/10/ledger-2026-10-20.csv
[[ -f $seed/$failover_key ]] || failover_key=$new_key
apps s3 cp --only-show-errors "s3://fintech-prod/$failover_key" "$work/failover.csv"
want=$(awk -v k="$failover_key" '$2 == k {print $1}' "$work/SHA256SUMS")
have=$(sha256sum <"$work/failover.csv" | cut -d' ' -f1)
[[ $want == "$have" ]] || die "$failover_key read through serve has SHA-256 $have, want $want"
note "aws s3 cp s3://fintech-prod/$failover_key through serve: SHA-256 matches the original: $have"
if apps s3 rm "s3://fintech-prod/$failover_key" >/dev/null 2>"$work/serve-write.txt"; then
	die "serve accepted a delete"
fi
grep -q AccessDenied "$work/serve-write.txt" || die "a delete through serve failed otherwise than AccessDenied: $(cat "$work/serve-write.txt")"
note "aws s3 rm through serve  ->  AccessDenied: the replica changes only through voyageur sync"
kill "${pids[-1]}"
wait "${pids[-1]}" 2>/dev/null || true
unset 'pids[-1]'
note "voyageur serve stopped"

say "Disaster-recovery drill from the kit: a sample restored and verified, RTO measured, residency and key custody reported"
drills=${DEMO_DRILL_DIR:-${TMPDIR:-/tmp}/voyageur-demo-drills}
# Its warnings (retries against the dead source) go to a log.
if ! drill_out=$("$voyageur" drill -c "$kit/voyageur.yaml" --identity "$kit/identity.txt" --report "$drills" --quiet 2>"$work/drill.log"); then
	cat "$work/drill.log" >&2
	printf '%s\n' "$drill_out" | sed 's/^/      /'
	die "the drill failed"
fi
printf '%s\n' "$drill_out" | sed 's/^/      /'
drill_page=$(sed -n 's/^page: *//p' <<<"$drill_out")
note "the source is down and the journal gone, so the RPO is reported unknown (null), never guessed"

say "Shutting down"
stop_servers
elapsed=$((SECONDS - started))
if [[ ${DEMO_KEEP:-} == 1 ]]; then
	note "both MinIO servers stopped; files kept in $work"
else
	rm -rf "$work"
	note "both MinIO servers stopped, temporary files removed"
fi
trap - EXIT
printf '\n==> Done in %dm%02ds: %d objects replicated to Canada encrypted, source lost, restore verified: %d/%d files match their SHA-256; failover served the ledger; drill passed, report: %s\n' \
	$((elapsed / 60)) $((elapsed % 60)) "$replicas" "$files" "$files" "$drill_page"
