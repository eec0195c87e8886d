/**
 * A preview of a rendered email: the host renders templates with minijinja; the kit fills in
 * plain substitutions (`{{ name }}`, `{{ a.b }}`) and leaves every other piece of template
 * syntax as written, so a test can read what an email says without a template engine.
 *
 * @internal
 */

const SUBSTITUTION = /\{\{-?\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*-?\}\}/g;

function lookup(context: { readonly [key: string]: unknown }, path: string): unknown {
  let value: unknown = context;
  for (const part of path.split('.')) {
    if (value === null || typeof value !== 'object' || !Object.prototype.hasOwnProperty.call(value, part)) {
      return undefined;
    }
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

/** A value as minijinja prints it, near enough. */
function display(value: unknown): string {
  if (value === undefined) return '';
  if (value === null) return 'none';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `[${value.map((v) => (typeof v === 'string' ? JSON.stringify(v) : display(v))).join(', ')}]`;
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).map(
      ([k, v]) => `${JSON.stringify(k)}: ${typeof v === 'string' ? JSON.stringify(v) : display(v)}`,
    );
    return `{${entries.join(', ')}}`;
  }
  return String(value);
}

function escapeHtml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#x27;')
    .replace(/\//g, '&#x2f;');
}

/** `source` with its plain substitutions filled from `context` (HTML-escaped when `html`). */
export function renderPreview(source: string, context: { readonly [key: string]: unknown }, html = false): string {
  return source.replace(SUBSTITUTION, (_, path: string) => {
    const text = display(lookup(context, path));
    return html ? escapeHtml(text) : text;
  });
}
