#!/usr/bin/env python3
"""Grammar-aware fuzz inputs for allma's template, condition, JSONPath and
DynamoDB-expression parsers.  Prints one input a line:
"<kind>\\t<hex of the UTF-8 input>", kind one of template, condition, path,
dotpath (the default kinds), ddbcond, ddbkey, ddbupdate, ddbproj (DynamoDB
filter/condition, key condition, update and projection expressions).
t/067_fuzz_parsers.pl and t/068_sanitized_fuzz.pl feed them through the SQL
functions that parse (and evaluate) them.

    python3 scripts/fuzz-parsers.py COUNT SEED [KIND,KIND...]

The kinds take turns (default: template,condition,path,dotpath; "all" is
every kind).

Each input is built from the kind's grammar (valid-looking, nested at
random depth) and then, half of the time, mutated (characters deleted,
duplicated, swapped, replaced by grammar tokens or odd characters).
Deterministic for a given COUNT and SEED.  No NUL characters: text values
cannot hold them (t/066's corpus covers NUL bytes).
"""
import random
import sys

ODD = ["", " ", "\t", "\n", "'", '"', "\\", "{", "}", "[", "]", "(", ")", "$", "@", ".", "..", "~", "!",
       "#", "/", "|", "=", ",", ":", "?", "*", "-", "0", "1e309", "-0", "9" * 30, "é", "\u2028", "\U0001F600",
       "\ufeff", "\u0001", "{{", "}}", "[?(", ")]", "&&", "||", "==="]


class Gen:
    def __init__(self, rnd):
        self.r = rnd

    def name(self):
        return self.r.choice(["a", "b", "xs", "items", "n", "name", "this", "o", "k", "x_1", "ÿ", "@index",
                              "@key", "@root", "..", "../a", "a.b", "a.[0]", "[a b]", "a/b", "length"])

    def literal(self):
        return self.r.choice(['"s"', "'s'", "1", "-1.5", "true", "false", "null", "undefined", "0", '""',
                              "1e3", '"{{"', "'}}'"])

    # ---- templates ------------------------------------------------------
    def t_expr(self, d):
        r = self.r.random()
        if r < 0.5 or d > 4:
            return self.name()
        if r < 0.7:
            return self.literal()
        helper = self.r.choice(["lookup", "json", "slice", "eq", "neq", "gt", "lt", "default", "base64",
                                "log", "nohelper"])
        args = " ".join(self.t_expr(d + 1) for _ in range(self.r.randint(0, 3)))
        hashes = " ".join(f"{self.r.choice(['k', 'includeZero', 'x'])}={self.t_expr(d + 1)}"
                          for _ in range(self.r.randint(0, 1)))
        return f"({helper} {args} {hashes})".replace("  ", " ")

    def template(self, d=0):
        parts = []
        for _ in range(self.r.randint(1, 3)):
            r = self.r.random()
            if r < 0.25 or d > 3:
                parts.append(self.r.choice(["text ", "x", " ", "\n", "\\{{a}}", "é", "}} ", "{ {"]))
            elif r < 0.55:
                open_, close = self.r.choice([("{{", "}}"), ("{{{", "}}}"), ("{{&", "}}"), ("{{~", "~}}")])
                parts.append(f"{open_}{self.t_expr(d)}{close}")
            elif r < 0.6:
                parts.append(self.r.choice(["{{! c }}", "{{!-- c --}}", "{{!-- {{x}} --}}"]))
            else:
                helper = self.r.choice(["if", "unless", "each", "with", "with_json_path", "eq", "a", "^a"])
                bp = " as |x i|" if helper == "each" and self.r.random() < 0.3 else ""
                arg = self.t_expr(d + 1) if helper != "with_json_path" else '"$.a"'
                head = f"{{{{#{helper} {arg}{bp}}}}}" if not helper.startswith("^") else "{{^a}}"
                body = self.template(d + 1)
                els = ("{{else}}" + self.template(d + 1)) if self.r.random() < 0.3 else ""
                end = "{{/" + (helper.lstrip("^")) + "}}"
                parts.append(head + body + els + end)
        return "".join(parts)

    # ---- conditions ---------------------------------------------------------
    def c_atom(self, d):
        r = self.r.random()
        if r < 0.45:
            return self.path(d + 1)
        if r < 0.75:
            return self.literal()
        if r < 0.85:
            return "$.arr[?(@ > 1)]"
        return "(" + self.condition(d + 1) + ")"

    def condition(self, d=0):
        if d > 4 or self.r.random() < 0.35:
            return self.c_atom(d)
        r = self.r.random()
        if r < 0.15:
            return "!" + self.c_atom(d)
        op = self.r.choice(["==", "!=", "===", "!==", ">", "<", ">=", "<=", "&&", "||", "+", "-", "*", "in"])
        return f"{self.condition(d + 1)} {op} {self.condition(d + 1)}"

    # ---- JSONPaths ----------------------------------------------------------------
    def path(self, d=0):
        segs = []
        for _ in range(self.r.randint(0, 5)):
            r = self.r.random()
            if r < 0.35:
                segs.append("." + self.r.choice(["a", "b", "arr", "o", "k", "n", "ü", "with space", "*"]))
            elif r < 0.5:
                segs.append(f"[{self.r.randint(-3, 5)}]")
            elif r < 0.6:
                segs.append(self.r.choice(["['a']", '["b"]', "['x y']", "[*]", "['a','b']", "[0,1]"]))
            elif r < 0.7:
                segs.append(self.r.choice(["[1:2]", "[:1]", "[-1:]", "[::2]", "[0:5:0]"]))
            elif r < 0.8:
                segs.append(".." + self.r.choice(["a", "*", "[0]"]))
            elif d < 3:
                value = self.r.choice(["1", "true", '"x"', "null"])
                segs.append(f"[?(@.{self.r.choice(['a', 'n', 'k'])} {self.r.choice(['==', '>', '<', '!='])} "
                            f"{value})]")
        return "$" + "".join(segs)

    def dotpath(self):
        segs = []
        for _ in range(self.r.randint(1, 4)):
            segs.append(self.r.choice(["a", "b", "items", "x_1", "é"]) +
                        (f"[{self.r.randint(0, 3)}]" if self.r.random() < 0.3 else ""))
        return ".".join(segs)

    # ---- DynamoDB expressions ---------------------------------------------------------
    def odd(self, common, rare, p=0.02):
        """one of common, or (with probability p) one of rare"""
        return self.r.choice(rare if self.r.random() < p else common)

    def d_path(self):
        segs = [self.odd(["n", "s", "tags", "m", "l", "PK", "SK", "status", "#n", "#odd", "a", "x1"],
                         ["size", "AND", "#", "1a", "é"])]
        for _ in range(self.r.randint(0, 3)):
            if self.r.random() < 0.6:
                segs.append("." + self.odd(["a", "b", "k", "#n", "x", "c"], ["", "#", "IN"]))
            else:
                segs.append(f"[{self.odd(['0', '1', '2', '99'], ['-1', '00', '1e3', '', '99999999999'])}]")
        return "".join(segs)

    def d_value(self):
        return self.odd([":n", ":s", ":l", ":m", ":b", ":z", ":pk", ":n2"], [":", "::n", ":é"])

    def d_operand(self, d, size=0.15):
        r = self.r.random()
        if r < size:
            return f"size({self.d_path()})"
        if r < 0.5:
            return self.d_path()
        return self.d_value()

    def ddbcond(self, d=0):
        r = self.r.random()
        if d > 4 or r < 0.35:
            r2 = self.r.random()
            if r2 < 0.5:
                op = self.odd(["=", "<>", "<", "<=", ">", ">="], ["==", "!=", "=<"])
                return f"{self.d_operand(d)} {op} {self.d_operand(d)}"
            if r2 < 0.6:
                return f"{self.d_operand(d)} BETWEEN {self.d_operand(d)} AND {self.d_operand(d)}"
            if r2 < 0.7:
                ops = ", ".join(self.d_operand(d) for _ in range(self.r.randint(0, 4)))
                return f"{self.d_operand(d)} IN ({ops})"
            fn, nargs = self.odd([("attribute_exists", 1), ("attribute_not_exists", 1), ("attribute_type", 2),
                                  ("begins_with", 2), ("contains", 2)],
                                 [("size", 1), ("Contains", 2), ("nofunc", 0), ("contains", 3)], 0.1)
            args = [self.d_path()] + [self.d_operand(d) for _ in range(nargs - 1)]
            return f"{fn}({', '.join(args)})"
        if r < 0.5:
            return "NOT " + self.ddbcond(d + 1)
        if r < 0.65:
            return "(" + self.ddbcond(d + 1) + ")"
        return f"{self.ddbcond(d + 1)} {self.r.choice(['AND', 'OR', 'and', 'or'])} {self.ddbcond(d + 1)}"

    def ddbkey(self):
        pk = self.r.choice(["PK", "#p", "SK", ":pk"])
        head = f"{pk} = {self.r.choice([':pk', ':s', ':n', 'PK'])}"
        r = self.r.random()
        if r < 0.3:
            return head
        sk = self.r.choice(["SK", "#s", "n", "PK"])
        if r < 0.6:
            tail = f"{sk} {self.r.choice(['=', '<', '<=', '>', '>=', '<>'])} {self.d_value()}"
        elif r < 0.8:
            tail = f"{sk} BETWEEN {self.d_value()} AND {self.d_value()}"
        else:
            tail = f"begins_with({sk}, {self.d_value()})"
        if self.r.random() < 0.2:
            return f"({tail}) AND ({head})"
        return f"{head} AND {tail}"

    def d_setvalue(self, d=0):
        r = self.r.random()
        if r < 0.5 or d > 3:
            return self.d_operand(d, 0.02)
        if r < 0.7:
            return f"if_not_exists({self.d_path()}, {self.d_setvalue(d + 1)})"
        if r < 0.85:
            return f"list_append({self.d_setvalue(d + 1)}, {self.d_setvalue(d + 1)})"
        return f"{self.d_setvalue(d + 1)} {self.r.choice(['+', '-'])} {self.d_setvalue(d + 1)}"

    def d_target(self):
        """an update's target: mostly not a key attribute (PK, SK)"""
        p = self.d_path()
        while p.startswith(("PK", "SK")) and self.r.random() < 0.9:
            p = self.d_path()
        return p

    def ddbupdate(self):
        clauses = []
        kws = ["SET", "REMOVE", "ADD", "DELETE"]
        self.r.shuffle(kws)
        for kw in kws[:self.r.randint(1, 3)]:
            if self.r.random() < 0.05:
                kw = self.r.choice(["UPDATE", "set", "SET SET", ""])
            n = self.r.randint(1, 2)
            if kw.upper() == "SET":
                items = [f"{self.d_target()} = {self.d_setvalue()}" for _ in range(n)]
            elif kw.upper() == "REMOVE":
                items = [self.d_target() for _ in range(n)]
            else:
                fit = [":n", ":l"] if kw.upper() == "ADD" else [":l"]
                items = [f"{self.d_target()} {self.r.choice(fit) if self.r.random() < 0.7 else self.d_value()}"
                         for _ in range(n)]
            clauses.append(kw + " " + ", ".join(items))
        return " ".join(clauses)

    def ddbproj(self):
        return ", ".join(self.d_path() for _ in range(self.r.randint(1, 4)))

    # ---- mutation -------------------------------------------------------------------------
    def mutate(self, s):
        s = list(s)
        for _ in range(self.r.randint(1, 4)):
            op = self.r.random()
            pos = self.r.randint(0, len(s))
            if op < 0.3 and s:
                del s[min(pos, len(s) - 1)]
            elif op < 0.5 and s:
                i = min(pos, len(s) - 1)
                j = min(i + self.r.randint(1, 8), len(s))
                s[i:i] = s[i:j]
            elif op < 0.6 and len(s) > 1:
                i, j = self.r.randrange(len(s)), self.r.randrange(len(s))
                s[i], s[j] = s[j], s[i]
            else:
                s[pos:pos] = list(self.r.choice(ODD))
        return "".join(s)


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    g = Gen(random.Random(seed))
    makers = {"template": g.template, "condition": g.condition, "path": g.path, "dotpath": g.dotpath,
              "ddbcond": g.ddbcond, "ddbkey": g.ddbkey, "ddbupdate": g.ddbupdate, "ddbproj": g.ddbproj}
    kinds = ["template", "condition", "path", "dotpath"]
    if len(sys.argv) > 3:
        kinds = list(makers) if sys.argv[3] == "all" else sys.argv[3].split(",")
        for kind in kinds:
            if kind not in makers:
                sys.exit(f"fuzz-parsers.py: unknown kind {kind!r} (known: {', '.join(makers)}, all)")
    out = sys.stdout.buffer
    for i in range(count):
        kind = kinds[i % len(kinds)]
        s = makers[kind]()
        if g.r.random() < 0.5:
            s = g.mutate(s)
        s = s.replace("\0", "")
        out.write(kind.encode() + b"\t" + s.encode("utf-8", "surrogatepass").hex().encode() + b"\n")


if __name__ == "__main__":
    main()
