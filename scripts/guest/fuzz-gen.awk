# Seeded generator of *invalid* inputs for aether's guest fuzz job (busybox awk).
#   awk -v seed=N -v n=COUNT -v kind=debugfs|message|table -v dev=/dev/nvme0n1 -f fuzz-gen.awk
# One case per line, fields separated by a tab:
#   debugfs:  FILE  MODE  K  PAYLOAD   MODE w (one write), p (writes of K bytes, PAYLOAD's pieces split
#                                      by '|'), o (one write at offset K); PAYLOAD is printf(1) octal
#                                      escapes, so any byte (NUL included) survives
#   message:  WORD...                  the words after `dmsetup message DEV 0 --`
#   table:    ARG...                   the arguments after "0 <len> aether" (none for an empty line)
# Every case must be refused whatever the device's current settings: each one carries a
# "poison" (a byte no grammar accepts, a magnitude no tunable allows, a wrong arity or name).
BEGIN {
    srand(seed)
    for (i = 1; i < 256; i++) ORD[sprintf("%c", i)] = i
    np1 = split("x E X , ; # ! ~ @ ^ & * ( ) [ ] { } < > ? = _ : ' \" ` $ | /", P1, " ")
    ntun = split("phi epsilon lambda1 lambda2 lambda3 bias learning_rate enabled cache_mb", TUN, " ")
    npois = split("x e E X nan inf 0x , ; # ! ~ @ ^ & * ( ) [ ] { } < > ? = _ : ' \" ` $ | / ¤ é", POIS, " ")
    for (i = 0; i < ncases(); i++) {
        if (kind == "debugfs") debugfs_case()
        else if (kind == "message") message_case()
        else table_case()
    }
}
function ncases() { return n + 0 }
function rnd(k) { return int(rand() * k) }
function chance(pct) { return rnd(100) < pct }
function digits(k,   s, i) { s = ""; for (i = 0; i < k; i++) s = s rnd(10); return s }
function nzdigits(k) { return (1 + rnd(9)) digits(k - 1) }
function poison() { return POIS[1 + rnd(npois)] }
function tunable() { return TUN[1 + rnd(ntun)] }
function number(   s) {
    s = (chance(30) ? "-" : "") digits(1 + rnd(3))
    if (chance(60)) s = s "." digits(rnd(8))
    return s
}
# A value no tunable accepts, for any file or message (printable; NUL and raw bytes are added by callers).
function bad_value(   r, s, at) {
    r = rnd(9)
    if (r == 0) return (chance(20) ? "+" : (chance(30) ? "-" : "")) nzdigits(6 + rnd(35)) (chance(30) ? "." digits(rnd(10)) : "")
    if (r == 1) { s = number(); at = rnd(length(s) + 1); return substr(s, 1, at) poison() substr(s, at + 1) }
    if (r == 2) return digits(1 + rnd(3)) "." digits(rnd(3)) "." digits(1 + rnd(3))
    if (r == 3) return pick3("+-", "--", "-+") digits(1 + rnd(4))
    if (r == 4) return digits(1 + rnd(3)) pick3("-", "+", "+-") digits(1 + rnd(3))
    if (r == 5) return "0." zeros(31 + rnd(60)) (1 + rnd(9))
    if (r == 6) return pick3("1e3", "0x10", "1,5") pick3("", "0", ".5")
    if (r == 7) return poison() poison() (chance(50) ? number() : "")
    return number() " " poison()
}
function pick3(a, b, c,   r) { r = rnd(3); return r == 0 ? a : (r == 1 ? b : c) }
function zeros(k,   s) { s = ""; while (k-- > 0) s = s "0"; return s }
# Octal escapes for printf(1): every byte, so NUL, newlines and high bytes pass through the shell intact.
function octal(s,   out, i, c) {
    out = ""
    for (i = 1; i <= length(s); i++) { c = ORD[substr(s, i, 1)]; out = out sprintf("\\%03o", c) }
    return out
}
function debugfs_case(   f, mode, k, v, s, i, raw, at, out) {
    f = tunable()
    mode = rnd(10)
    if (mode < 2) {
        # Partial writes: poison at every even index and an odd length, so each chunk of >= 2 bytes
        # (the last one included) holds a poison byte.
        k = 2 + rnd(6); s = ""
        raw = 1 + 2 * (1 + rnd(12))
        for (i = 0; i < raw; i++) s = s ((i % 2 == 0) ? poison1() : substr("0123456789.", 1 + rnd(11), 1))
        out = octal(substr(s, 1, k))
        for (i = k + 1; i <= raw; i += k) out = out "|" octal(substr(s, i, k))
        printf "%s\tp\t%d\t%s\n", f, k, out
        return
    }
    v = bad_value()
    if (mode == 5) v = v zeros(70)
    out = octal(v)
    # A NUL inside the value, or a raw byte >= 0x80 (mostly invalid UTF-8) after it.
    if (mode < 4) { at = rnd(length(v) + 1); out = octal(substr(v, 1, at)) "\\000" octal(substr(v, at + 1)) }
    else if (mode == 4) out = out sprintf("\\%03o", 128 + rnd(128))
    if (chance(70)) out = out "\\012"
    if (mode == 6 && chance(50)) printf "%s\to\t%d\t%s\n", f, 1 + rnd(4096), out
    else printf "%s\tw\t0\t%s\n", f, out
}
# Single-byte ASCII poisons (partial writes split values byte by byte).
function poison1() { return P1[1 + rnd(np1)] }
function message_case(   r, w, i, k) {
    r = rnd(10)
    if (r < 4) { printf "set\t%s\t%s\n", tunable(), bad_value(); return }
    if (r == 4) { printf "set\t%s\t%s\n", bad_name(), number(); return }
    if (r == 5) { printf "get\t%s\n", bad_name(); return }
    if (r == 6) { printf "%s\n", pick3("get", "set", "reset_stats\tnow"); return }
    if (r == 7) { printf "%s\t%s\t%s\t%s\n", pick3("set", "get", "drop_cache"), tunable(), number(), number(); return }
    if (r == 8) { w = bad_name(); for (i = 0; i < rnd(4); i++) w = w "\t" bad_value(); print w; return }
    k = 5 + rnd(40); w = "set"; for (i = 0; i < k; i++) w = w "\t" number(); print w
}
function bad_name(   r) {
    r = rnd(5)
    if (r == 0) return toupper(substr(tunable(), 1, 1)) substr(tunable(), 2)
    if (r == 1) return tunable() digits(1 + rnd(2))
    if (r == 2) return poison() tunable()
    if (r == 3) return "cache-mb"
    return "q" digits(1 + rnd(30))
}
function table_case(   r, t, n) {
    r = rnd(8)
    if (r == 0) { print ""; return }
    if (r == 1) { printf "%s\n", pick3("/dev/nvme9n1", "/dev/null_nope", "99999:99999") (chance(50) ? "\t2\tepsilon\t0.5" : ""); return }
    if (r == 2) { printf "%s\t%s\n", dev, pick3("abc", "-2", nzdigits(20 + rnd(20))); return }
    if (r == 3) { n = 1 + 2 * rnd(3); printf "%s\t%d\tepsilon\t0.5\n", dev, n; return }
    if (r == 4) { printf "%s\t2\t%s\t%s\n", dev, bad_name(), number(); return }
    if (r == 5) { printf "%s\t2\t%s\t%s\n", dev, tunable(), bad_value(); return }
    if (r == 6) { printf "%s\t4\tepsilon\t0.5\t%s\t%s\n", dev, tunable(), bad_value(); return }
    t = dev "\t2\t" tunable(); print t
}
