#!/usr/bin/env bash
# The floors go one way: each folder uses only the folders below it.
#
#   proxy/cmd/   the program: main and the proxy, inspect, rules and ca commands   (top)
#   proxy/       loop, listeners, legs, TLS, CA, session
#   filters/     the rule language, matching, actions, feature rewrites
#   inspect/     parser, stanza model, masking, printers, offline reader         (bottom)
#
# This check reads every #include "..." of those folders and fails, with FILE:LINE and the rule
# broken, on an include that goes up a floor, an include of ours written without its folder, or
# an include of a header that does not exist. It also checks that filters/ and inspect/ never
# include libuv or OpenSSL (only proxy/ knows them), and that the target_link_libraries() of each
# library names only the libraries of the floors below it, so each one links on its own.
#
#   bash tests/check-layers.sh [SOURCE_DIR]     (default: the checkout this script is in)
#
# ctest runs it (label "layers"). Exit status: 0 when every rule holds, 1 otherwise.
set -euo pipefail
top=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$top"

floors=("inspect/" "filters/" "proxy/" "proxy/cmd/")
names=("inspect" "filters" "proxy" "the program (proxy/cmd)")
libs=("xs_inspect" "xs_filters" "xs_proxy" "xs_cmd")
failed=0

# Sets $floor to the floor (index into floors) of a path relative to the top: the longest folder
# it lies in, or -1 when it is in none of ours. (A variable, not output: no subshell per include.)
floor_of() {
    local i
    floor=-1
    for i in "${!floors[@]}"; do
        case $1 in "${floors[$i]}"*) floor=$i ;; esac
    done
}

fail() {
    echo "$1: error: $2" >&2
    failed=1
}

below() {
    local f=$1 out="" i
    for ((i = f; i >= 0; i--)); do out+="${out:+, }${floors[$i]}"; done
    echo "$out"
}

# Every include line of ours, as FILE:LINE:TEXT, in a stable order.
while IFS= read -r hit; do
    file=${hit%%:*}
    rest=${hit#*:}
    lineno=${rest%%:*}
    line=${rest#*:}
    floor_of "$file"
    from=$floor
    if [[ $line =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\"([^\"]+)\" ]]; then
        inc=${BASH_REMATCH[1]}
        floor_of "$inc"
        to=$floor
        if [ "$to" -lt 0 ]; then
            fail "$file:$lineno" "#include \"$inc\": write our headers with their folder (as \"inspect/parser.h\"), so the floor it comes from shows"
        elif [ ! -f "$inc" ]; then
            fail "$file:$lineno" "#include \"$inc\": no such header"
        elif [ "$to" -gt "$from" ]; then
            fail "$file:$lineno" "#include \"$inc\" goes up a floor: ${names[$from]} (${floors[$from]}) may include only $(below "$from"), not ${floors[$to]}; move the code down or the caller up"
        fi
    elif [[ $line =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\<(uv\.h|openssl/[^\>]*)\> ]]; then
        if [ "$from" -lt 2 ]; then
            fail "$file:$lineno" "#include <${BASH_REMATCH[1]}>: only proxy/ knows libuv and OpenSSL; ${floors[$from]} must not"
        fi
    fi
done < <(find proxy filters inspect -type f \( -name '*.c' -o -name '*.h' \) -print0 | LC_ALL=C sort -z |
    xargs -0 grep -nHE '^[[:space:]]*#[[:space:]]*include' || true)

# Each library's CMake target links only what lies below it.
for i in "${!floors[@]}"; do
    cm="${floors[$i]}CMakeLists.txt"
    [ -f "$cm" ] || { fail "$cm" "missing: it defines ${libs[$i]}"; continue; }
    grep -q "add_library(${libs[$i]}[[:space:]]" "$cm" || fail "$cm" "it does not define ${libs[$i]}"
    lineno=0
    in_tll=0
    while IFS= read -r line || [ -n "$line" ]; do
        lineno=$((lineno + 1))
        rest=$line
        if [[ $line =~ target_link_libraries\(${libs[$i]}[[:space:]] ]]; then
            in_tll=1
            rest=${line#*target_link_libraries("${libs[$i]}"}
        fi
        if [ "$in_tll" = 1 ]; then
            for j in "${!libs[@]}"; do
                if [ "$j" -ge "$i" ] && [[ $rest =~ (^|[[:space:]])${libs[$j]}([[:space:]]|\)|$) ]]; then
                    fail "$cm:$lineno" "${libs[$i]} links ${libs[$j]}: a library links only the floors below it"
                fi
            done
            [[ $line == *")"* ]] && in_tll=0
        fi
    done <"$cm"
done

if [ "$failed" = 0 ]; then
    echo "layers: every include and every library link goes down (proxy/cmd -> proxy -> filters -> inspect)"
fi
exit "$failed"
