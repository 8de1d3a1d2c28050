#!/bin/bash
# joedefender-collect.sh: recover ONE quarantined file on Linux or macOS, by its SHA-256, for a
# sandbox analysis.
#
# Run by the joedefender connector through Microsoft Defender for Endpoint live response
# (RunScript). Contract: joedefender.endpoint.posix_contract in the joedefender package.
# The quarantine's on-disk format is not documented on these platforms, so the only way to
# recover a quarantined file is to restore it, which takes the entry out of the quarantine: the
# connector runs this script only where the user allowed restore (AllowQuarantineRestore).
#
# Arguments: -Mode Restore|Cleanup -JobId ID [-Sha256 HEX -OriginalPathHex HEX], each made of
# [A-Za-z0-9-] only, so they mean the same however live response splits Args (not documented for
# bash); the original path arrives as the hex of its bytes.
#
# Restore mode
#   1. Deletes job folders under the work root older than 24 hours, and our exclusions left for
#      folders that are gone.
#   2. Creates <work root>/<JobId> (a fresh nonce from the connector; mode 0700, root's, not a
#      link) and in it a restore folder with a fresh random name (mktemp -d, mode 0700).
#   3. Adds a temporary Defender folder exclusion for the restore folder, then restores the
#      entry by its original path (mdatp threat quarantine restore threat-path, agents from
#      101.23092.0012), else by the ids the JSON listings give for that path (the older syntax).
#   4. Keeps only the restored file whose SHA-256 matches, written XOR-defanged (public key
#      below; not a secret, it keeps the sample inert on disk) to <job folder>/sample.bin, for a
#      GetFile in the same action.
#   5. In a trap that runs on every exit (errors, TERM, INT, HUP, its own deadline): deletes every
#      restored plaintext first, then removes the exclusion (else real-time protection would
#      detect or lock the file).
# Cleanup mode deletes the job folder and any exclusion for it.
#
# A deadline inside the script (by default 8 of live response's 10 minutes) sends the script a
# TERM, so its trap has cleaned up before live response would kill it.
#
# Output: exactly one JSON line on stdout,
#   {"joedefender":1,"status":"found|not_found|error|cleaned","sha256":...,"size":...,
#    "path":...,"source":"restore"|null,"message":"..."}
# Exit code: 0 found or cleaned, 2 not found, 1 error.
#
# Hygiene: no secrets, no network access, no code built from arguments or from what the device
# says (paths, threat ids, mdatp's output are only data). Needs root, mdatp and perl (with its
# core modules Digest::SHA and JSON::PP). Written for bash 3.2 (what macOS ships) and later.

set -euo pipefail
umask 077
export LC_ALL=C
PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
export PATH

readonly SAMPLE_FILE_NAME=sample.bin
readonly DEFANG_KEY_HEX=5fb389bf97028e347a9c1f073a4ad2f7bad7b7b934fa23e7d86fa685a3e1742e
readonly MAX_FILE_BYTES=536870912
readonly STALE_MINUTES=1440
# Live response stops RunScript after 10 minutes (run-live-response.md). The script's own
# deadline is four fifths of that. JOEDEFENDER_LIVE_RESPONSE_TIMEOUT (whole seconds) can only
# shorten it: the emulator compresses time through it.
LIVE_RESPONSE_TIMEOUT=600
if [[ "${JOEDEFENDER_LIVE_RESPONSE_TIMEOUT:-}" =~ ^[0-9]{1,4}$ ]] &&
  ((10#$JOEDEFENDER_LIVE_RESPONSE_TIMEOUT > 0 && 10#$JOEDEFENDER_LIVE_RESPONSE_TIMEOUT < LIVE_RESPONSE_TIMEOUT)); then
  LIVE_RESPONSE_TIMEOUT=$((10#$JOEDEFENDER_LIVE_RESPONSE_TIMEOUT))
fi
DEADLINE_SECONDS=$((LIVE_RESPONSE_TIMEOUT * 4 / 5))
if ((DEADLINE_SECONDS < 1)); then
  DEADLINE_SECONDS=1
fi
readonly LIVE_RESPONSE_TIMEOUT DEADLINE_SECONDS

MODE=''
JOB_ID=''
SHA256=''
PATH_HEX=''
ORIGINAL_PATH=''
WORK_ROOT=''
JOB_DIR=''
RESTORE_DIR=''
EXCLUDED=''
CHILD_PID=''
WATCHDOG_PID=''
STATUS=''
MESSAGE=''
OUT_SIZE=''
OUT_PATH=''
NOTES=''
FINISHING=''

note() {
  if [[ -n "$NOTES" ]]; then
    NOTES="$NOTES; $1"
  else
    NOTES="$1"
  fi
}

outcome() {
  STATUS="$1"
  MESSAGE="${2:-}"
}

# A JSON string: backslash and quote escaped, control characters dropped, at most 1000 bytes.
json_string() {
  local text="${1:0:1000}"
  text="${text//\\/\\\\}"
  text="${text//\"/\\\"}"
  text="$(printf '%s' "$text" | tr -d '\000-\037\177')"
  printf '"%s"' "$text"
}

json_or_null() {
  if [[ -n "$1" ]]; then
    json_string "$1"
  else
    printf 'null'
  fi
}

print_outcome() {
  local message="$MESSAGE" sha='' size='null' source='null'
  if [[ -n "$NOTES" ]]; then
    message="${message:+$message; }$NOTES"
  fi
  if [[ "$STATUS" == found ]]; then
    sha="$SHA256"
    size="$OUT_SIZE"
    source='"restore"'
  fi
  # To the stdout the script started with (fd 3): a trap may run inside a redirected command.
  printf '{"joedefender":1,"status":"%s","sha256":%s,"size":%s,"path":%s,"source":%s,"message":%s}\n' \
    "$STATUS" "$(json_or_null "$sha")" "$size" "$(json_or_null "$OUT_PATH")" "$source" "$(json_string "$message")" >&3
}

# Run a command in the background and wait for it: a trapped signal interrupts `wait` at once,
# where it would wait for a command in the foreground to end.
bounded() {
  local rc=0
  "$@" &
  CHILD_PID=$!
  wait "$CHILD_PID" || rc=$?
  CHILD_PID=''
  return "$rc"
}

stop_child() {
  if [[ -n "$CHILD_PID" ]]; then
    kill -KILL "$CHILD_PID" 2>/dev/null || true
    wait "$CHILD_PID" 2>/dev/null || true
    CHILD_PID=''
  fi
}

start_watchdog() {
  local target=$$
  (
    sleep "$DEADLINE_SECONDS" &
    sleeper=$!
    trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
    wait "$sleeper" || exit 0
    kill -TERM "$target" 2>/dev/null || true
  ) </dev/null >/dev/null 2>&1 &
  WATCHDOG_PID=$!
}

stop_watchdog() {
  if [[ -n "$WATCHDOG_PID" ]]; then
    kill -TERM "$WATCHDOG_PID" 2>/dev/null || true
    WATCHDOG_PID=''
  fi
}

# Owned by root, a folder, not a link, writable by root only.
trusted_folder() {
  local folder="$1"
  [[ -d "$folder" && ! -L "$folder" && -O "$folder" ]] || return 1
  [[ -z "$(find "$folder" -maxdepth 0 \( -perm -0002 -o -perm -0020 \) -print)" ]]
}

remove_exclusion() {
  local folder="$1"
  if bounded mdatp exclusion folder remove --path "$folder" >/dev/null 2>&1; then
    return 0
  fi
  return 1
}

cleanup() {
  stop_child
  # First every restored plaintext, while the exclusion still keeps real-time protection off it.
  if [[ -n "$RESTORE_DIR" && -d "$RESTORE_DIR" && ! -L "$RESTORE_DIR" ]]; then
    rm -rf -- "$RESTORE_DIR" || note 'could not delete the restored files'
  fi
  if [[ -n "$EXCLUDED" ]]; then
    remove_exclusion "$EXCLUDED" || note 'could not remove the temporary exclusion'
    EXCLUDED=''
  fi
  if [[ "$STATUS" != found && -n "$JOB_DIR" && -d "$JOB_DIR" && ! -L "$JOB_DIR" ]]; then
    rm -rf -- "$JOB_DIR" || note 'could not delete the job folder'
  fi
  stop_watchdog
}

on_exit() {
  local code=$?
  trap '' TERM INT HUP
  set +e
  if [[ -z "$FINISHING" ]]; then
    FINISHING=1
    if [[ -z "$STATUS" ]]; then
      outcome error "the script stopped on an unexpected error (exit $code)"
    fi
    cleanup
    print_outcome
  fi
  case "$STATUS" in
    found | cleaned) exit 0 ;;
    not_found) exit 2 ;;
    *) exit 1 ;;
  esac
}

on_signal() {
  trap '' TERM INT HUP
  outcome error "stopped by SIG$1 (the script's deadline is ${DEADLINE_SECONDS}s)"
  exit 1
}

exec 3>&1
trap on_exit EXIT
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT
trap 'on_signal HUP' HUP

fail() {
  outcome error "$1"
  exit 1
}

parse_args() {
  while (($# > 0)); do
    (($# >= 2)) || fail "parameter $1 has no value"
    case "$1" in
      -Mode) [[ -z "$MODE" ]] || fail 'Mode is given twice'; MODE="$2" ;;
      -JobId) [[ -z "$JOB_ID" ]] || fail 'JobId is given twice'; JOB_ID="$2" ;;
      -Sha256) [[ -z "$SHA256" ]] || fail 'Sha256 is given twice'; SHA256="$2" ;;
      -OriginalPathHex) [[ -z "$PATH_HEX" ]] || fail 'OriginalPathHex is given twice'; PATH_HEX="$2" ;;
      *) fail 'unknown parameter' ;;
    esac
    shift 2
  done
  [[ "$MODE" == Restore || "$MODE" == Cleanup ]] || fail 'Mode must be Restore or Cleanup'
  [[ "$JOB_ID" =~ ^[A-Za-z0-9][A-Za-z0-9-]{0,63}$ ]] || fail 'JobId must be 1 to 64 of [A-Za-z0-9-], not starting with -'
  if [[ "$MODE" == Restore ]]; then
    [[ "$SHA256" =~ ^[0-9a-fA-F]{64}$ ]] || fail 'Sha256 must be 64 hex digits'
    # Length apart from the pattern: a bounded repetition of 4095 makes some regex engines slow.
    if [[ ! "$PATH_HEX" =~ ^[0-9a-fA-F]+$ ]] || ((${#PATH_HEX} % 2 != 0 || ${#PATH_HEX} < 4 || ${#PATH_HEX} > 8190)); then
      fail 'OriginalPathHex must be 2 to 4095 bytes in hex'
    fi
    SHA256="$(printf '%s' "$SHA256" | tr 'A-F' 'a-f')"
    decode_path
  fi
}

# The original path from its hex: an absolute path, no control characters, no wildcard
# characters (so no restore can match several paths), no empty, `.` or `..` component.
decode_path() {
  local at byte text
  for ((at = 0; at < ${#PATH_HEX}; at += 2)); do
    byte="${PATH_HEX:at:2}"
    case "$byte" in
      0[0-9a-fA-F] | 1[0-9a-fA-F] | 7[fF]) fail 'OriginalPathHex holds a control character' ;;
      2[aA] | 3[fF] | 5[bBdD]) fail 'OriginalPathHex holds a wildcard character' ;;
    esac
  done
  # Every byte as \xHH, expanded by one printf: no byte can end the string early or be code.
  text="$(printf '%s' "$PATH_HEX" | sed 's/../\\x&/g')"
  text="$(printf '%b' "$text")"
  [[ "$text" == /* && "$text" != */ ]] || fail 'OriginalPathHex is not an absolute file path'
  case "$text" in
    *//* | */./* | */../* | */. | */..) fail 'OriginalPathHex has an empty, . or .. component' ;;
  esac
  ORIGINAL_PATH="$text"
}

find_work_root() {
  case "$(uname -s)" in
    Linux) WORK_ROOT=/var/opt/joedefender ;;
    Darwin) WORK_ROOT=/private/var/joedefender ;;
    *) fail 'this script runs on Linux and macOS only' ;;
  esac
  if [[ ! -e "$WORK_ROOT" && ! -L "$WORK_ROOT" ]]; then
    mkdir -m 0700 -- "$WORK_ROOT" || fail "cannot create $WORK_ROOT"
  fi
  trusted_folder "$WORK_ROOT" || fail "$WORK_ROOT is not a folder only root controls; refusing to use it"
  JOB_DIR="$WORK_ROOT/$JOB_ID"
}

# Leftovers of runs that were killed (SIGKILL cannot be trapped) or whose cleanup never came.
remove_stale() {
  local stale excluded listing
  listing="$(mktemp "$WORK_ROOT/exclusions.XXXXXXXXXX")" || return 0
  while IFS= read -r stale; do
    [[ -n "$stale" ]] || continue
    rm -rf -- "$stale" || note 'could not remove a stale job folder'
  done < <(find "$WORK_ROOT" -mindepth 1 -maxdepth 1 -type d -mmin +"$STALE_MINUTES" -print)
  if bounded mdatp exclusion list --output json >"$listing" 2>/dev/null; then
    while IFS= read -r excluded; do
      if [[ -n "$excluded" && ! -e "$excluded" ]]; then
        remove_exclusion "$excluded" || note 'could not remove a stale exclusion'
      fi
    done < <(json_paths_under "$listing" "$WORK_ROOT/")
  fi
  rm -f -- "$listing"
}

# Every string in a JSON document that is a path under $2 made of [A-Za-z0-9./-] (our folders).
json_paths_under() {
  # shellcheck disable=SC2016 # perl code: its $ are perl's
  JD_PREFIX="$2" bounded perl -MJSON::PP -e '
    my $text = do { local $/; open(my $f, "<", $ARGV[0]) or exit 1; <$f> };
    my $doc = eval { JSON::PP->new->decode($text) };
    exit 0 unless defined $doc;
    my @todo = ($doc);
    while (@todo) {
      my $item = shift @todo;
      if (ref $item eq "HASH") { push @todo, values %$item }
      elsif (ref $item eq "ARRAY") { push @todo, @$item }
      elsif (defined $item && !ref $item && index($item, $ENV{JD_PREFIX}) == 0 && $item =~ m{\A[A-Za-z0-9./-]+\z}) { print "$item\n" }
    }' "$1"
}

# The ids of the threats in a JSON listing that name $2 as a path: each object holding that path
# anywhere inside it, and an id under one of the names seen for it. Only ids of [A-Za-z0-9-].
json_ids_for_path() {
  # shellcheck disable=SC2016 # perl code: its $ are perl's
  JD_PATH="$2" bounded perl -MJSON::PP -e '
    my $text = do { local $/; open(my $f, "<", $ARGV[0]) or exit 1; <$f> };
    my $doc = eval { JSON::PP->new->decode($text) };
    exit 0 unless defined $doc;
    sub holds { my ($item) = @_;
      if (ref $item eq "HASH") { for (values %$item) { return 1 if holds($_) } return 0 }
      if (ref $item eq "ARRAY") { for (@$item) { return 1 if holds($_) } return 0 }
      return defined $item && !ref $item && $item eq $ENV{JD_PATH} }
    my @todo = ($doc); my %seen;
    while (@todo) {
      my $item = shift @todo;
      if (ref $item eq "ARRAY") { push @todo, @$item; next }
      next unless ref $item eq "HASH";
      my ($key) = grep { exists $item->{$_} } qw(id threatId threat_id trackingId);
      if (defined $key && !ref $item->{$key} && $item->{$key} =~ m{\A[A-Za-z0-9-]{1,128}\z} && holds($item)) {
        print "$item->{$key}\n" unless $seen{$item->{$key}}++;
      } else { push @todo, values %$item }
    }' "$1"
}

# Hash $1; when it is the wanted SHA-256, write it XOR-defanged to $2 (created new) and print its
# size. Exit 0 on a match, 3 otherwise (then $2 does not exist).
defang_if_match() {
  # shellcheck disable=SC2016 # perl code: its $ are perl's
  bounded perl -MDigest::SHA -e '
    my ($source, $target, $wanted, $key_hex, $limit) = @ARGV;
    my $key = pack("H*", $key_hex);
    open(my $in, "<:raw", $source) or exit 1;
    my $size = -s $in;
    exit 3 if !defined $size || $size > $limit;
    my $sha = Digest::SHA->new(256);
    my ($buffer, $n);
    while (($n = read($in, $buffer, 1048576))) { $sha->add($buffer) }
    exit 3 unless $sha->hexdigest eq $wanted;
    seek($in, 0, 0) or exit 1;
    use Fcntl qw(O_WRONLY O_CREAT O_EXCL O_NOFOLLOW);
    sysopen(my $out, $target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600) or exit 1;
    binmode $out;
    my $check = Digest::SHA->new(256);
    my $offset = 0;
    while (($n = read($in, $buffer, 1048576))) {
      $check->add($buffer);
      my $start = $offset % length($key);
      my $stream = substr($key x (int(($n + $start) / length($key)) + 2), $start, $n);
      print {$out} ($buffer ^ $stream) or exit 1;
      $offset += $n;
    }
    close($out) or exit 1;
    if ($check->hexdigest ne $wanted) { unlink $target; exit 3 }
    print "$offset\n";
    exit 0' "$1" "$2" "$SHA256" "$DEFANG_KEY_HEX" "$MAX_FILE_BYTES"
}

restore_by_path() {
  bounded mdatp threat quarantine restore threat-path --path "$ORIGINAL_PATH" --destination-path "$RESTORE_DIR" \
    >/dev/null 2>&1
}

# Agents before 101.23092.0012: the ids the listings give for the path, restored one by one.
restore_by_id() {
  local listing="$JOB_DIR/listing.json" id
  if ! bounded mdatp threat quarantine list --output json >"$listing" 2>/dev/null; then
    bounded mdatp threat list --output json >"$listing" 2>/dev/null || note 'mdatp could not list the threats'
  fi
  while IFS= read -r id; do
    [[ -n "$id" ]] || continue
    bounded mdatp threat quarantine restore --id "$id" --path "$RESTORE_DIR" >/dev/null 2>&1 ||
      note 'a restore by id failed'
    if keep_match; then
      break
    fi
  done < <(json_ids_for_path "$listing" "$ORIGINAL_PATH")
  rm -f -- "$listing"
}

# The restored regular file whose SHA-256 matches, defanged into the job folder.
keep_match() {
  local file size_file="$JOB_DIR/size"
  [[ -z "$OUT_PATH" ]] || return 0
  while IFS= read -r file; do
    [[ -f "$file" && ! -L "$file" ]] || continue
    chmod 0600 -- "$file"
    if defang_if_match "$file" "$JOB_DIR/$SAMPLE_FILE_NAME" >"$size_file"; then
      read -r OUT_SIZE <"$size_file"
      OUT_PATH="$JOB_DIR/$SAMPLE_FILE_NAME"
      rm -f -- "$size_file"
      return 0
    fi
  done < <(find "$RESTORE_DIR" -type f -print)
  rm -f -- "$size_file"
  return 1
}

run_restore() {
  command -v mdatp >/dev/null 2>&1 || fail 'mdatp was not found'
  command -v perl >/dev/null 2>&1 || fail 'perl was not found'
  find_work_root
  remove_stale
  [[ ! -e "$JOB_DIR" && ! -L "$JOB_DIR" ]] || fail 'the job folder exists already; refusing to reuse it'
  mkdir -m 0700 -- "$JOB_DIR" || fail 'cannot create the job folder'
  trusted_folder "$JOB_DIR" || fail 'the job folder is not root-only'
  RESTORE_DIR="$(mktemp -d "$JOB_DIR/restore.XXXXXXXXXX")" || fail 'cannot create the restore folder'
  trusted_folder "$RESTORE_DIR" || fail 'the restore folder is not root-only'
  # Set first: if mdatp added it but failed to say so, the trap still removes it.
  EXCLUDED="$RESTORE_DIR"
  bounded mdatp exclusion folder add --path "$RESTORE_DIR" >/dev/null 2>&1 ||
    fail 'could not add the temporary exclusion'
  if restore_by_path; then
    keep_match || true
  else
    note 'restore by path failed; trying restore by id'
    restore_by_id
  fi
  if [[ -n "$OUT_PATH" ]]; then
    outcome found
  else
    outcome not_found 'restoring the original path gave no match'
  fi
}

run_cleanup() {
  find_work_root
  if [[ -L "$JOB_DIR" ]]; then
    rm -f -- "$JOB_DIR"
  elif [[ -d "$JOB_DIR" ]]; then
    local folder
    for folder in "$JOB_DIR"/restore.*; do
      if [[ -d "$folder" ]]; then
        remove_exclusion "$folder" || true
      fi
    done
    rm -rf -- "$JOB_DIR"
  fi
  JOB_DIR=''
  remove_stale
  outcome cleaned
}

main() {
  parse_args "$@"
  [[ "$(id -u)" == 0 ]] || fail 'the script must run as root'
  start_watchdog
  if [[ "$MODE" == Restore ]]; then
    run_restore
  else
    run_cleanup
  fi
}

main "$@"
