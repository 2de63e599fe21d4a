#!/usr/bin/env python3
"""QAPI schema compiler for blockpoint (Python 3 standard library only).

Reads schema files written in QEMU's schema dialect (see qapi/README.md):
one Python-literal-like expression per definition ('enum', 'struct',
'union', 'alternate', 'command', 'event', plus 'include' and 'pragma'),
each preceded by a '##' documentation block.  Produces, in --output-dir:

  <prefix>qapi-schema.c   introspection JSON (wire form, QEMU's SchemaInfo
                          format), the richer validation JSON (sized integer
                          builtins kept) and C enum string tables
  <prefix>qapi-types.h    C enums for every schema enum, event name macros
  <prefix>qmp-commands.c  the command table (name, arg/ret type, handler)
  <prefix>qmp-commands.h  one prototype per handler, all with the same
                          signature
  <prefix>qmp-reference.md  the QMP reference in Markdown

With --compare A B it only checks that two files are identical (used by the
test that keeps the committed docs/qmp/ copy fresh).
"""

import argparse
import json
import os
import re
import sys

# Builtin types: name -> JSON type (as in SchemaInfoBuiltin.json-type).
BUILTINS = {
    'str': 'string', 'number': 'number', 'bool': 'boolean', 'null': 'null',
    'any': 'value', 'int': 'int', 'size': 'int',
    'int8': 'int', 'int16': 'int', 'int32': 'int', 'int64': 'int',
    'uint8': 'int', 'uint16': 'int', 'uint32': 'int', 'uint64': 'int',
}

META_KEYS = ('enum', 'struct', 'union', 'alternate', 'command', 'event',
             'include', 'pragma')

ALLOWED_KEYS = {
    'enum': {'enum', 'data', 'prefix', 'features'},
    'struct': {'struct', 'data', 'base', 'features'},
    'union': {'union', 'data', 'base', 'discriminator', 'features'},
    'alternate': {'alternate', 'data', 'features'},
    'command': {'command', 'data', 'returns', 'boxed', 'features',
                'allow-preconfig', 'allow-oob', 'gen', 'success-response',
                'coroutine'},
    'event': {'event', 'data', 'boxed', 'features'},
    'include': {'include'},
    'pragma': {'pragma'},
}


class SchemaError(Exception):
    def __init__(self, where, msg):
        super().__init__('%s: %s' % (where, msg))


# --------------------------------------------------------------------------
# Lexing and parsing of the schema files
# --------------------------------------------------------------------------

class Doc:
    """One '##' documentation block."""

    def __init__(self, where):
        self.where = where
        self.symbol = None        # name after '@' on the first line
        self.body = []            # free text paragraphs (lines)
        self.args = {}            # member name -> text
        self.features = {}        # feature name -> text
        self.sections = []        # (title, [lines]) e.g. Returns, Since
        self.is_heading = False

    def text_for(self, name):
        return ' '.join(self.args.get(name, '').split())


def parse_doc(lines, where):
    """Turn the lines of a '##' block (without '# ' prefixes) into a Doc."""
    doc = Doc(where)
    if lines and lines[0].startswith('='):
        doc.is_heading = True
        doc.body = [lines[0].lstrip('=').strip()]
        return doc
    if not lines or not re.match(r'^@[\w.-]+:\s*$', lines[0]):
        raise SchemaError(where, "doc block must start with '@name:' "
                                 "or '= Heading'")
    doc.symbol = lines[0][1:].rstrip().rstrip(':')
    target = doc.body
    in_features = False
    for line in lines[1:]:
        m = re.match(r'^@([\w.-]+):\s*(.*)$', line)
        s = re.match(r'^(Returns|Since|Errors|Notes?|Examples?|TODO)'
                     r':\s*(.*)$', line)
        if line.strip() == 'Features:':
            in_features = True
            continue
        if m:
            table = doc.features if in_features else doc.args
            table[m.group(1)] = m.group(2)
            target = None
            cur_name, cur_table = m.group(1), table
            continue
        if s:
            in_features = False
            target = [s.group(2)] if s.group(2) else []
            doc.sections.append((s.group(1), target))
            continue
        if target is None:
            if line.strip() == '':
                target = doc.body if not doc.sections else doc.sections[-1][1]
                continue
            cur_table[cur_name] += ' ' + line.strip()
            continue
        target.append(line)
    return doc


class Parser:
    """Parser for one schema file; yields (expr, doc, where) tuples."""

    def __init__(self, fname):
        self.fname = fname
        with open(fname, encoding='utf-8') as f:
            self.src = f.read()
        self.pos = 0
        self.line = 1
        self.pending_doc = None

    def where(self):
        return '%s:%d' % (self.fname, self.line)

    def error(self, msg):
        raise SchemaError(self.where(), msg)

    def _skip_space(self):
        while self.pos < len(self.src):
            c = self.src[self.pos]
            if c == '\n':
                self.line += 1
                self.pos += 1
            elif c in ' \t\r':
                self.pos += 1
            elif c == '#':
                if self.src.startswith('##', self.pos) and \
                        self._at_line_start():
                    self._read_doc()
                else:
                    self._skip_line()
            else:
                return

    def _at_line_start(self):
        start = self.src.rfind('\n', 0, self.pos) + 1
        return self.src[start:self.pos].strip() == ''

    def _skip_line(self):
        end = self.src.find('\n', self.pos)
        self.pos = len(self.src) if end < 0 else end

    def _read_doc(self):
        where = self.where()
        self._skip_line()
        lines = []
        while True:
            if self.pos >= len(self.src):
                self.error('unterminated doc block')
            self.pos += 1
            self.line += 1
            end = self.src.find('\n', self.pos)
            end = len(self.src) if end < 0 else end
            raw = self.src[self.pos:end]
            self.pos = end
            if raw.strip() == '##':
                break
            if not raw.startswith('#'):
                self.error("doc line must start with '#'")
            lines.append(raw[2:] if raw.startswith('# ') else raw[1:])
        if self.pending_doc and not self.pending_doc.is_heading:
            raise SchemaError(self.pending_doc.where,
                              'doc block not followed by a definition')
        self.pending_doc = parse_doc(lines, where)
        if self.pending_doc.is_heading:
            self.headings.append((self.pending_doc, len(self.exprs)))
            self.pending_doc = None

    def _value(self):
        self._skip_space()
        if self.pos >= len(self.src):
            self.error('unexpected end of file')
        c = self.src[self.pos]
        if c in '\'"':
            return self._string(c)
        if c == '{':
            self.pos += 1
            result = {}
            self._skip_space()
            if self._peek() == '}':
                self.pos += 1
                return result
            while True:
                self._skip_space()
                if self._peek() not in '\'"':
                    self.error('expected string key')
                key = self._string(self._peek())
                self._expect(':')
                if key in result:
                    self.error("duplicate key '%s'" % key)
                result[key] = self._value()
                self._skip_space()
                c = self._peek()
                self.pos += 1
                if c == '}':
                    return result
                if c != ',':
                    self.error("expected ',' or '}'")
        if c == '[':
            self.pos += 1
            result = []
            self._skip_space()
            if self._peek() == ']':
                self.pos += 1
                return result
            while True:
                result.append(self._value())
                self._skip_space()
                c = self._peek()
                self.pos += 1
                if c == ']':
                    return result
                if c != ',':
                    self.error("expected ',' or ']'")
        for word, val in (('true', True), ('false', False)):
            if self.src.startswith(word, self.pos):
                self.pos += len(word)
                return val
        self.error("unexpected character '%s'" % c)

    def _peek(self):
        return self.src[self.pos] if self.pos < len(self.src) else ''

    def _expect(self, ch):
        self._skip_space()
        if self._peek() != ch:
            self.error("expected '%s'" % ch)
        self.pos += 1

    def _string(self, quote):
        self.pos += 1
        out = []
        while True:
            if self.pos >= len(self.src) or self.src[self.pos] == '\n':
                self.error('unterminated string')
            c = self.src[self.pos]
            self.pos += 1
            if c == quote:
                return ''.join(out)
            if c == '\\':
                c = self.src[self.pos]
                self.pos += 1
            out.append(c)

    def parse(self):
        self.exprs = []
        self.headings = []
        while True:
            self._skip_space()
            if self.pos >= len(self.src):
                break
            where = self.where()
            if self._peek() != '{':
                self.error("expected '{' starting a definition")
            expr = self._value()
            self.exprs.append((expr, self.pending_doc, where))
            self.pending_doc = None
        if self.pending_doc:
            raise SchemaError(self.pending_doc.where,
                              'doc block not followed by a definition')
        return self.exprs, self.headings


# --------------------------------------------------------------------------
# Schema model
# --------------------------------------------------------------------------

class Member:
    def __init__(self, name, typ, optional, features, where):
        self.name = name
        self.type = typ           # type name; arrays as '[T]'
        self.optional = optional
        self.features = features
        self.where = where


class Entity:
    def __init__(self, meta, name, expr, doc, where):
        self.meta = meta          # enum/struct/union/alternate/command/event
        self.name = name
        self.expr = expr
        self.doc = doc
        self.where = where
        self.features = []
        self.members = []         # struct/union base members/command args
        self.values = []          # enum: (name, features)
        self.variants = []        # union: (case, type)
        self.tag = None
        self.base = None
        self.alternatives = []    # alternate: (name, type)
        self.arg_type = None
        self.ret_type = None
        self.implicit = False
        self.boxed = False


def check_name(name, where, what):
    if not isinstance(name, str) or \
            not re.match(r'^(__[a-z0-9.-]+_)?[A-Za-z][A-Za-z0-9_.-]*$', name):
        raise SchemaError(where, "%s has an invalid name %r" % (what, name))


def features_of(value, where):
    if value is None:
        return []
    if not isinstance(value, list):
        raise SchemaError(where, "'features' must be a list")
    out = []
    for f in value:
        if isinstance(f, dict):
            if set(f) - {'name'}:
                raise SchemaError(where, "feature keys other than 'name' "
                                         "(e.g. 'if') are not supported")
            f = f.get('name')
        check_name(f, where, 'feature')
        out.append(f)
    return out


def type_ref(value, where, what):
    """A member type: 'Name' or ['Name'] -> 'Name' / '[Name]'."""
    if isinstance(value, list):
        if len(value) != 1 or not isinstance(value[0], str):
            raise SchemaError(where, '%s: array type must name exactly one '
                                     'element type' % what)
        return '[%s]' % value[0]
    if isinstance(value, str):
        return value
    raise SchemaError(where, '%s: type must be a name or [name]' % what)


def members_of(data, where, owner):
    if not isinstance(data, dict):
        raise SchemaError(where, "%s: 'data' must be a dictionary" % owner)
    out = []
    for key, value in data.items():
        optional = key.startswith('*')
        name = key[1:] if optional else key
        check_name(name, where, '%s member' % owner)
        features = []
        if isinstance(value, dict):
            extra = set(value) - {'type', 'features'}
            if extra:
                raise SchemaError(where, "%s member '%s': unsupported keys %s"
                                  % (owner, name, sorted(extra)))
            features = features_of(value.get('features'), where)
            value = value.get('type')
        out.append(Member(name, type_ref(value, where, '%s member %s'
                                         % (owner, name)),
                          optional, features, where))
    return out


class Schema:
    def __init__(self):
        self.entities = {}       # name -> Entity (types, commands, events)
        self.order = []          # definition order of Entities
        self.headings = []       # (text, index into order)
        self.pragmas = []

    def add(self, ent):
        if ent.name in self.entities or ent.name in BUILTINS:
            raise SchemaError(ent.where, "'%s' is already defined"
                              % ent.name)
        self.entities[ent.name] = ent
        self.order.append(ent)

    def load(self, fname, seen):
        fname = os.path.normpath(fname)
        if fname in seen:
            return
        seen.add(fname)
        exprs, headings = Parser(fname).parse()
        base_index = len(self.order)
        pending_headings = list(headings)
        for i, (expr, doc, where) in enumerate(exprs):
            while pending_headings and pending_headings[0][1] <= i:
                self.headings.append((pending_headings.pop(0)[0].body[0],
                                      len(self.order)))
            self._expr(expr, doc, where, fname, seen)
        for h, _ in pending_headings:
            self.headings.append((h.body[0], len(self.order)))
        del base_index

    def _expr(self, expr, doc, where, fname, seen):
        metas = [k for k in META_KEYS if k in expr]
        if len(metas) != 1:
            raise SchemaError(where, 'definition must have exactly one of %s'
                              % ', '.join(META_KEYS))
        meta = metas[0]
        extra = set(expr) - ALLOWED_KEYS[meta]
        if 'if' in expr:
            raise SchemaError(where, "'if' conditionals are not supported")
        if extra:
            raise SchemaError(where, 'unknown keys %s' % sorted(extra))
        if meta == 'include':
            self.load(os.path.join(os.path.dirname(fname), expr['include']),
                      seen)
            return
        if meta == 'pragma':
            self.pragmas.append(expr['pragma'])
            return
        name = expr[meta]
        check_name(name, where, meta)
        if doc is None:
            raise SchemaError(where, "%s '%s' has no doc block" % (meta, name))
        if doc.symbol != name:
            raise SchemaError(where, "doc block is for '%s', not '%s'"
                              % (doc.symbol, name))
        ent = Entity(meta, name, expr, doc, where)
        ent.features = features_of(expr.get('features'), where)
        getattr(self, '_def_' + meta)(ent, expr, where)
        self.add(ent)

    def _def_enum(self, ent, expr, where):
        data = expr.get('data')
        if not isinstance(data, list) or not data:
            raise SchemaError(where, "enum '%s': 'data' must be a non-empty "
                                     "list" % ent.name)
        for v in data:
            feats = []
            if isinstance(v, dict):
                feats = features_of(v.get('features'), where)
                v = v.get('name')
            check_name(v, where, 'enum value')
            if v in [x[0] for x in ent.values]:
                raise SchemaError(where, "enum '%s': duplicate value '%s'"
                                  % (ent.name, v))
            ent.values.append((v, feats))
        ent.prefix = expr.get('prefix')

    def _def_struct(self, ent, expr, where):
        ent.members = members_of(expr.get('data', {}), where, ent.name)
        ent.base = expr.get('base')

    def _def_union(self, ent, expr, where):
        base = expr.get('base')
        if isinstance(base, dict):
            implicit = Entity('struct', 'q_obj_%s-base' % ent.name, {}, None,
                              where)
            implicit.members = members_of(base, where, ent.name)
            implicit.implicit = True
            self.add(implicit)
            base = implicit.name
        if not isinstance(base, str):
            raise SchemaError(where, "union '%s' needs a 'base'" % ent.name)
        ent.base = base
        ent.tag = expr.get('discriminator')
        if not isinstance(ent.tag, str):
            raise SchemaError(where, "union '%s' needs a 'discriminator'"
                              % ent.name)
        data = expr.get('data')
        if not isinstance(data, dict):
            raise SchemaError(where, "union '%s': 'data' must be a dict"
                              % ent.name)
        for case, typ in data.items():
            if isinstance(typ, dict):
                typ = typ.get('type')
            if not isinstance(typ, str):
                raise SchemaError(where, "union '%s' branch '%s' must name a "
                                         "struct" % (ent.name, case))
            ent.variants.append((case, typ))

    def _def_alternate(self, ent, expr, where):
        data = expr.get('data')
        if not isinstance(data, dict) or not data:
            raise SchemaError(where, "alternate '%s': 'data' must be a "
                                     "non-empty dict" % ent.name)
        for name, typ in data.items():
            if isinstance(typ, dict):
                typ = typ.get('type')
            ent.alternatives.append((name, type_ref(typ, where, ent.name)))

    def _implicit_args(self, ent, data, where, suffix):
        if data is None:
            return 'q_empty'
        if isinstance(data, str):
            return data
        implicit = Entity('struct', 'q_obj_%s-%s' % (ent.name, suffix), {},
                          None, where)
        implicit.members = members_of(data, where, ent.name)
        implicit.implicit = True
        self.add(implicit)
        return implicit.name

    def _def_command(self, ent, expr, where):
        ent.boxed = bool(expr.get('boxed'))
        ent.arg_type = self._implicit_args(ent, expr.get('data'), where,
                                           'arg')
        if 'returns' in expr:
            ent.ret_type = type_ref(expr['returns'], where, ent.name)
        else:
            ent.ret_type = 'q_empty'
        if expr.get('allow-oob'):
            raise SchemaError(where, "'allow-oob' is not supported")
        if expr.get('gen') is False:
            raise SchemaError(where, "'gen': false is not supported: every "
                                     "command has a handler")

    def _def_event(self, ent, expr, where):
        ent.boxed = bool(expr.get('boxed'))
        data = expr.get('data')
        ent.arg_type = None if data is None else \
            self._implicit_args(ent, data, where, 'arg')

    # ----------------------------------------------------------------------
    # Semantic checks
    # ----------------------------------------------------------------------

    def lookup_type(self, name, where, what):
        if name.startswith('['):
            self.lookup_type(name[1:-1], where, what)
            return None
        if name in BUILTINS or name == 'q_empty':
            return None
        ent = self.entities.get(name)
        if ent is None or ent.meta in ('command', 'event'):
            raise SchemaError(where, "%s uses unknown type '%s'"
                              % (what, name))
        return ent

    def all_members(self, ent, stack=()):
        """Non-variant members of a struct/union including its base."""
        if ent.name in stack:
            raise SchemaError(ent.where, "'%s' is its own base" % ent.name)
        out = []
        if ent.base:
            base = self.lookup_type(ent.base, ent.where, ent.name)
            if base is None or base.meta != 'struct':
                raise SchemaError(ent.where, "base of '%s' must be a struct"
                                  % ent.name)
            out = self.all_members(base, stack + (ent.name,))
        return out + ent.members

    def json_kind(self, name):
        """JSON category of a type, for alternate ambiguity checks."""
        if name.startswith('['):
            return 'array'
        if name in BUILTINS:
            return {'string': 'string', 'int': 'int', 'number': 'number',
                    'boolean': 'boolean', 'null': 'null',
                    'value': 'value'}[BUILTINS[name]]
        ent = self.entities[name]
        return {'enum': 'string', 'struct': 'object', 'union': 'object',
                'alternate': 'alternate'}[ent.meta]

    def check(self):
        for ent in self.order:
            getattr(self, '_check_' + ent.meta)(ent)
        self._check_docs()

    def _check_members_unique(self, ent, members):
        seen = set()
        for m in members:
            if m.name in seen:
                raise SchemaError(ent.where, "'%s' has member '%s' twice"
                                  % (ent.name, m.name))
            seen.add(m.name)
            self.lookup_type(m.type, m.where, "'%s' member '%s'"
                             % (ent.name, m.name))

    def _check_enum(self, ent):
        pass

    def _check_struct(self, ent):
        self._check_members_unique(ent, self.all_members(ent))

    def _check_union(self, ent):
        members = self.all_members(ent)
        self._check_members_unique(ent, members)
        tag = [m for m in members if m.name == ent.tag]
        if not tag or tag[0].optional:
            raise SchemaError(ent.where, "union '%s': discriminator '%s' "
                              "must be a mandatory base member"
                              % (ent.name, ent.tag))
        enum = self.entities.get(tag[0].type)
        if enum is None or enum.meta != 'enum':
            raise SchemaError(ent.where, "union '%s': discriminator must be "
                              "of enum type" % ent.name)
        values = [v for v, _ in enum.values]
        for case, typ in ent.variants:
            if case not in values:
                raise SchemaError(ent.where, "union '%s': branch '%s' is not "
                                  "a value of '%s'"
                                  % (ent.name, case, enum.name))
            branch = self.lookup_type(typ, ent.where, ent.name)
            if branch is None or branch.meta not in ('struct', 'union'):
                raise SchemaError(ent.where, "union '%s' branch '%s' must "
                                  "be an object type" % (ent.name, case))
            self._check_members_unique(ent, members +
                                       self.all_members(branch))

    def _check_alternate(self, ent):
        kinds = {}
        for name, typ in ent.alternatives:
            self.lookup_type(typ, ent.where, ent.name)
            kind = self.json_kind(typ)
            if kind in ('alternate', 'value'):
                raise SchemaError(ent.where, "alternate '%s' branch '%s' "
                                  "cannot be '%s'" % (ent.name, name, typ))
            clash = kinds.get(kind) or \
                (kind in ('int', 'number') and
                 (kinds.get('int') or kinds.get('number')))
            if clash:
                raise SchemaError(ent.where, "alternate '%s' branches '%s' "
                                  "and '%s' are not distinguishable"
                                  % (ent.name, clash, name))
            kinds[kind] = name

    def _check_command(self, ent):
        arg = self.lookup_type(ent.arg_type, ent.where, ent.name)
        if arg is not None and arg.meta not in ('struct', 'union'):
            raise SchemaError(ent.where, "command '%s': 'data' must be an "
                              "object type" % ent.name)
        if arg is not None and arg.meta == 'union' and not ent.boxed:
            raise SchemaError(ent.where, "command '%s': a union as 'data' "
                              "needs 'boxed': true" % ent.name)
        self.lookup_type(ent.ret_type, ent.where, ent.name)

    def _check_event(self, ent):
        if ent.arg_type:
            self.lookup_type(ent.arg_type, ent.where, ent.name)

    def _check_docs(self):
        for ent in self.order:
            if ent.implicit:
                continue
            doc = ent.doc
            names = []
            if ent.meta in ('struct', 'union'):
                names = [m.name for m in ent.members]
                base = self.entities.get(ent.base or '')
                if base is not None and base.implicit:
                    names = [m.name for m in base.members] + names
            elif ent.meta in ('command', 'event'):
                arg = self.entities.get(ent.arg_type or '')
                if arg is not None and arg.implicit:
                    names = [m.name for m in arg.members]
            elif ent.meta == 'enum':
                names = [v for v, _ in ent.values]
            elif ent.meta == 'alternate':
                names = [n for n, _ in ent.alternatives]
            for n in names:
                if n not in doc.args:
                    raise SchemaError(doc.where, "'%s': member '%s' is not "
                                      "documented" % (ent.name, n))
            for n in doc.args:
                if n not in names:
                    raise SchemaError(doc.where, "'%s': documented member "
                                      "'%s' does not exist" % (ent.name, n))

    # ----------------------------------------------------------------------
    # Introspection (QEMU's SchemaInfo format, real type names)
    # ----------------------------------------------------------------------

    def introspect(self, wire):
        """List of SchemaInfo dicts.

        wire=True: what query-qmp-schema returns: every integer type is
        shown as 'int' like QEMU does, and only entities reachable from a
        command or event are listed.  wire=False: the validation schema,
        which keeps sized integer builtins and lists every type."""
        out = []
        emitted = set()

        def tname(name):
            if name.startswith('['):
                return '[%s]' % tname(name[1:-1])
            if wire and BUILTINS.get(name) == 'int':
                return 'int'
            return name

        def feat(d, features):
            if features:
                d['features'] = list(features)
            return d

        def visit(name):
            name = tname(name)
            if name in emitted:
                return name
            emitted.add(name)
            if name.startswith('['):
                elem = visit(name[1:-1])
                out.append({'name': name, 'meta-type': 'array',
                            'element-type': elem})
                return name
            if name in BUILTINS:
                out.append({'name': name, 'meta-type': 'builtin',
                            'json-type': BUILTINS[name]})
                return name
            if name == 'q_empty':
                out.append({'name': name, 'meta-type': 'object',
                            'members': []})
                return name
            ent = self.entities[name]
            info = {'name': name}
            out.append(info)
            if ent.meta == 'enum':
                info['meta-type'] = 'enum'
                info['members'] = [feat({'name': v}, f) for v, f in
                                   ent.values]
                info['values'] = [v for v, _ in ent.values]
            elif ent.meta in ('struct', 'union'):
                info['meta-type'] = 'object'
                members = []
                for m in self.all_members(ent):
                    d = {'name': m.name, 'type': visit(m.type)}
                    if m.optional:
                        d['default'] = None
                    members.append(feat(d, m.features))
                info['members'] = members
                if ent.meta == 'union':
                    info['tag'] = ent.tag
                    info['variants'] = [{'case': c, 'type': visit(t)}
                                        for c, t in ent.variants]
            elif ent.meta == 'alternate':
                info['meta-type'] = 'alternate'
                info['members'] = [{'type': visit(t)}
                                   for _, t in ent.alternatives]
            feat(info, ent.features)
            return name

        for ent in self.order:
            if ent.meta == 'command':
                info = {'name': ent.name, 'meta-type': 'command'}
                out.append(info)
                info['arg-type'] = visit(ent.arg_type)
                info['ret-type'] = visit(ent.ret_type)
                feat(info, ent.features)
            elif ent.meta == 'event':
                info = {'name': ent.name, 'meta-type': 'event'}
                out.append(info)
                info['arg-type'] = visit(ent.arg_type or 'q_empty')
                feat(info, ent.features)
        if not wire:
            for b in sorted(BUILTINS):
                visit(b)
            for ent in self.order:
                if ent.meta not in ('command', 'event'):
                    visit(ent.name)
        return out


# --------------------------------------------------------------------------
# C output
# --------------------------------------------------------------------------

def c_name(name):
    return re.sub(r'[^A-Za-z0-9_]', '_', name)


def camel_to_upper(name):
    out = ''
    for i, ch in enumerate(name):
        if ch.isupper() and i > 0:
            prev = name[i - 1]
            nxt = name[i + 1] if i + 1 < len(name) else ''
            if prev.islower() or prev.isdigit() or \
                    (prev.isupper() and nxt.islower()):
                out += '_'
        out += ch
    return c_name(out).upper()


def c_string(text, indent='    '):
    """A C string literal split over lines."""
    lines = []
    chunk = ''
    for ch in text:
        if ch in '"\\':
            esc = '\\' + ch
        elif ch == '\n':
            esc = '\\n'
        elif ord(ch) < 0x20 or ord(ch) > 0x7e:
            esc = ''.join('\\%03o' % b for b in ch.encode('utf-8'))
        else:
            esc = ch
        chunk += esc
        if len(chunk) >= 70 and ch in ',{[':
            lines.append(chunk)
            chunk = ''
    if chunk or not lines:
        lines.append(chunk)
    return '\n'.join('%s"%s"' % (indent, ln) for ln in lines)


HEADER = '/* Generated by scripts/qapi-gen.py from %s; do not edit. */\n'


def gen_schema_c(schema, prefix, sources):
    wire = json.dumps(schema.introspect(True), separators=(',', ':'))
    full = json.dumps(schema.introspect(False), separators=(',', ':'))
    out = [HEADER % sources, '#include "%sqapi-types.h"\n' % prefix]
    out.append('const char %sqapi_introspection_json[] =\n%s;\n'
               % (prefix, c_string(wire)))
    out.append('const char %sqapi_validation_json[] =\n%s;\n'
               % (prefix, c_string(full)))
    for ent in schema.order:
        if ent.meta != 'enum':
            continue
        out.append('const char *const %s_str[%s] = {' % (
            c_name(ent.name), enum_max(ent)))
        for v, _ in ent.values:
            out.append('    [%s] = "%s",' % (enum_const(ent, v), v))
        out.append('};\n')
    return '\n'.join(out) + '\n'


def enum_prefix(ent):
    return ent.prefix if ent.prefix else camel_to_upper(ent.name)


def enum_const(ent, value):
    return '%s_%s' % (enum_prefix(ent), c_name(value).upper())


def enum_max(ent):
    return '%s__MAX' % enum_prefix(ent)


def gen_types_h(schema, prefix, sources):
    guard = '%sQAPI_TYPES_H' % prefix.upper()
    out = [HEADER % sources, '#ifndef %s\n#define %s\n' % (guard, guard)]
    out.append('/* Introspection JSON as query-qmp-schema returns it. */')
    out.append('extern const char %sqapi_introspection_json[];' % prefix)
    out.append('/* The same with sized integer types kept and every type '
               'listed;\n * this is what the validator reads. */')
    out.append('extern const char %sqapi_validation_json[];\n' % prefix)
    for ent in schema.order:
        if ent.meta == 'enum':
            out.append('typedef enum %s {' % c_name(ent.name))
            for v, _ in ent.values:
                out.append('    %s,' % enum_const(ent, v))
            out.append('    %s,' % enum_max(ent))
            out.append('} %s;' % c_name(ent.name))
            out.append('extern const char *const %s_str[%s];\n'
                       % (c_name(ent.name), enum_max(ent)))
    for ent in schema.order:
        if ent.meta == 'event':
            out.append('#define QAPI_EVENT_%s "%s"'
                       % (c_name(ent.name).upper(), ent.name))
    out.append('\n#endif')
    return '\n'.join(out) + '\n'


def gen_commands_h(schema, prefix, sources):
    guard = '%sQMP_COMMANDS_H' % prefix.upper()
    out = [HEADER % sources, '#ifndef %s\n#define %s\n' % (guard, guard),
           '#include "monitor/qmp-dispatch.h"\n']
    for ent in schema.order:
        if ent.meta == 'command':
            out.append('bool qmp_%s(JsonObject *args, JsonNode **ret, '
                       'GError **errp);' % c_name(ent.name))
    out.append('\n#endif')
    return '\n'.join(out) + '\n'


def gen_commands_c(schema, prefix, sources):
    out = [HEADER % sources, '#include "%sqmp-commands.h"\n' % prefix,
           'const QmpCommand %sqmp_commands[] = {' % prefix]
    for ent in schema.order:
        if ent.meta == 'command':
            flags = []
            if ent.expr.get('allow-preconfig'):
                flags.append('QMP_CMD_ALLOW_PRECONFIG')
            out.append('    { "%s", "%s", "%s", qmp_%s, %s },' % (
                ent.name, ent.arg_type, ent.ret_type, c_name(ent.name),
                ' | '.join(flags) or '0'))
    out.append('};\n')
    out.append('const size_t %sqmp_commands_count = '
               'sizeof(%sqmp_commands) / sizeof(%sqmp_commands[0]);\n'
               % (prefix, prefix, prefix))
    out.append('const char *const %sqmp_events[] = {' % prefix)
    for ent in schema.order:
        if ent.meta == 'event':
            out.append('    "%s",' % ent.name)
    out.append('    NULL,\n};')
    return '\n'.join(out) + '\n'


# --------------------------------------------------------------------------
# Markdown reference
# --------------------------------------------------------------------------

def md_type(name):
    if name.startswith('['):
        return 'array of %s' % md_type(name[1:-1])
    if name in BUILTINS or name == 'q_empty':
        return '`%s`' % name
    return '[`%s`](#%s)' % (name, anchor(name))


def anchor(name):
    return re.sub(r'[^a-z0-9_-]', '', name.lower())


def md_text(lines):
    text = '\n'.join(lines).strip('\n')
    return text + '\n' if text else ''


def md_members(schema, ent, members, doc):
    out = []
    if not members:
        return out
    out.append('| Member | Type | Description |')
    out.append('| --- | --- | --- |')
    for m in members:
        desc = doc.text_for(m.name) if doc else ''
        if m.optional:
            desc = '(optional) ' + desc
        if m.features:
            desc += ' Features: %s.' % ', '.join(m.features)
        out.append('| `%s` | %s | %s |' % (m.name, md_type(m.type),
                                           desc.replace('|', '\\|')))
    out.append('')
    return out


def md_entity(schema, ent):
    doc = ent.doc
    kind = {'command': 'Command', 'event': 'Event', 'enum': 'Enum',
            'struct': 'Struct', 'union': 'Union',
            'alternate': 'Alternate'}[ent.meta]
    out = ['### %s `%s`' % (kind, ent.name), '']
    out.append('<a id="%s"></a>' % anchor(ent.name))
    out.append('')
    body = md_text(doc.body)
    if body:
        out.append(body)
    if ent.meta == 'enum':
        out.append('| Value | Description |')
        out.append('| --- | --- |')
        for v, f in ent.values:
            extra = (' Features: %s.' % ', '.join(f)) if f else ''
            out.append('| `%s` | %s%s |' % (v, doc.text_for(v), extra))
        out.append('')
    elif ent.meta in ('struct', 'union'):
        if ent.base:
            base = schema.entities[ent.base]
            if base.implicit:
                out += md_members(schema, ent, base.members, doc)
            else:
                out.append('Base: %s' % md_type(ent.base))
                out.append('')
        out += md_members(schema, ent, ent.members, doc)
        if ent.meta == 'union':
            out.append('Discriminator `%s`; branches:' % ent.tag)
            out.append('')
            for case, typ in ent.variants:
                out.append('- `%s`: members of %s' % (case, md_type(typ)))
            out.append('')
    elif ent.meta == 'alternate':
        out.append('One of:')
        out.append('')
        for n, t in ent.alternatives:
            out.append('- %s: %s' % (md_type(t), doc.text_for(n)))
        out.append('')
    else:
        arg = schema.entities.get(ent.arg_type or '')
        if arg is not None and arg.implicit:
            out.append('Arguments:' if ent.meta == 'command' else 'Data:')
            out.append('')
            out += md_members(schema, ent, arg.members, doc)
        elif arg is not None:
            out.append('Arguments: the members of %s' % md_type(arg.name))
            out.append('')
        elif ent.meta == 'command' or ent.arg_type is None:
            out.append('Arguments: none' if ent.meta == 'command'
                       else 'Data: none')
            out.append('')
        if ent.meta == 'command' and \
                'Returns' not in [t for t, _ in doc.sections]:
            out.append('Returns: %s' % (md_type(ent.ret_type)
                                        if ent.ret_type != 'q_empty'
                                        else 'an empty object'))
            out.append('')
    if ent.features:
        out.append('Features: %s' % ', '.join('`%s`' % f
                                               for f in ent.features))
        out.append('')
    for title, lines in doc.sections:
        text = md_text(lines)
        if title.startswith('Example'):
            out.append('**%s:**' % title)
            out.append('')
            out.append('```')
            out.append(text.rstrip('\n'))
            out.append('```')
        else:
            out.append('**%s:** %s' % (title, text.strip()))
        out.append('')
    return out


def gen_markdown(schema, sources):
    out = ['# QMP reference', '',
           '<!-- Generated by scripts/qapi-gen.py from the schema in '
           'qapi/schema/; do not edit. -->', '',
           'Every command, event and type that the QMP monitor of '
           'blockpoint knows.',
           'The protocol itself is described in docs/devel/qmp.md.', '']
    headings = dict((i, t) for t, i in schema.headings)
    for i, ent in enumerate(schema.order):
        if i in headings:
            out.append('## %s' % headings[i])
            out.append('')
        if ent.implicit:
            continue
        out += md_entity(schema, ent)
    return '\n'.join(out).rstrip('\n') + '\n'


# --------------------------------------------------------------------------

def write_if_changed(path, text):
    try:
        with open(path, encoding='utf-8') as f:
            if f.read() == text:
                return
    except OSError:
        pass
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)


def compare(built, committed):
    with open(built, encoding='utf-8') as f:
        a = f.read()
    try:
        with open(committed, encoding='utf-8') as f:
            b = f.read()
    except OSError:
        b = None
    if a != b:
        print('%s is stale: regenerate it with\n  cp %s %s'
              % (committed, os.path.abspath(built), committed))
        return 1
    print('%s is up to date' % committed)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('-o', '--output-dir', default='.')
    ap.add_argument('-p', '--prefix', default='')
    ap.add_argument('--schema-only', action='store_true',
                    help='only write <prefix>qapi-schema.c and '
                         '<prefix>qapi-types.h')
    ap.add_argument('--compare', nargs=2, metavar=('BUILT', 'COMMITTED'))
    ap.add_argument('files', nargs='*')
    args = ap.parse_args()
    if args.compare:
        return compare(*args.compare)
    schema = Schema()
    try:
        seen = set()
        for f in args.files:
            schema.load(f, seen)
        schema.check()
    except SchemaError as e:
        print('qapi-gen: %s' % e, file=sys.stderr)
        return 1
    sources = ', '.join(os.path.basename(f) for f in args.files)
    p = args.prefix
    outputs = {
        p + 'qapi-schema.c': gen_schema_c(schema, p, sources),
        p + 'qapi-types.h': gen_types_h(schema, p, sources),
    }
    if not args.schema_only:
        outputs[p + 'qmp-commands.h'] = gen_commands_h(schema, p, sources)
        outputs[p + 'qmp-commands.c'] = gen_commands_c(schema, p, sources)
        outputs[p + 'qmp-reference.md'] = gen_markdown(schema, sources)
    for name, text in outputs.items():
        write_if_changed(os.path.join(args.output_dir, name), text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
