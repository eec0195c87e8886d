// Copies the repository's WIT (../../../wit) into ./wit before componentize-js runs: its
// bundled wasm tools cannot be trusted with paths outside the package directory.
// `waymark build` copies it too; when the package is built outside the repository, an
// existing ./wit is used as is.
import { cpSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const repoWit = join(pkg, '..', '..', '..', 'wit');
if (existsSync(join(repoWit, 'waymark.wit'))) {
  cpSync(repoWit, join(pkg, 'wit'), { recursive: true });
} else if (!existsSync(join(pkg, 'wit', 'waymark.wit'))) {
  console.error(`no WIT: neither ${repoWit} nor ./wit has waymark.wit`);
  process.exit(1);
}
mkdirSync(join(pkg, 'dist'), { recursive: true });
