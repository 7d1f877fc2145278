#!/usr/bin/env node
// Parses an AsyncAPI document (YAML or JSON file) with the official @asyncapi/parser and prints its
// diagnostics as JSON: {"file", "parser", "errors", "warnings", "diagnostics": [...]}.
// Exit status: 0 when the parser reports no error, 1 when it does, 2 on bad usage or an unreadable file.
// Usage: node check.mjs FILE   (`-` reads standard input)
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';

const SEVERITY = {
  [DiagnosticSeverity.Error]: 'error',
  [DiagnosticSeverity.Warning]: 'warning',
  [DiagnosticSeverity.Information]: 'information',
  [DiagnosticSeverity.Hint]: 'hint',
};

function readSource(file) {
  return readFileSync(file === '-' ? 0 : file, 'utf8');
}

function summarise(diagnostic) {
  return {
    severity: SEVERITY[diagnostic.severity] ?? String(diagnostic.severity),
    code: diagnostic.code,
    path: diagnostic.path.join('/'),
    message: diagnostic.message,
  };
}

async function main(argv) {
  if (argv.length !== 1) {
    console.error('usage: node check.mjs FILE');
    return 2;
  }
  let source;
  try {
    source = readSource(argv[0]);
  } catch (err) {
    console.error(`cannot read ${argv[0]}: ${err.message}`);
    return 2;
  }
  const { diagnostics } = await new Parser().parse(source, { source: argv[0] === '-' ? undefined : argv[0] });
  const found = diagnostics.map(summarise);
  const count = (severity) => found.filter((d) => d.severity === severity).length;
  const version = createRequire(import.meta.url)('@asyncapi/parser/package.json').version;
  const report = { file: argv[0], parser: version, errors: count('error'), warnings: count('warning'), diagnostics: found };
  console.log(JSON.stringify(report, null, 2));
  return report.errors > 0 ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
