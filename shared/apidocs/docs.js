// The API reference, rendered from openapi.json by this file alone (no CDN, no framework).
const root = document.getElementById("ops");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

async function main() {
  const doc = await (await fetch("openapi.json")).json();
  root.textContent = "";
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const section = el("section");
      section.append(el("span", { class: `method ${method}` }, method), el("code", {}, path));
      if (op.summary) section.append(el("p", {}, op.summary));
      if (op.description) section.append(el("p", {}, op.description));
      const details = el("details");
      details.append(el("summary", {}, "parameters, body and responses"));
      const parts = {
        parameters: op.parameters || [],
        requestBody: op.requestBody || null,
        responses: op.responses || {},
      };
      details.append(el("pre", {}, JSON.stringify(parts, null, 2)));
      section.append(details);
      root.append(section);
    }
  }
  const schemas = el("details");
  schemas.append(el("summary", {}, "schemas"));
  schemas.append(el("pre", {}, JSON.stringify(doc.components?.schemas || {}, null, 2)));
  root.append(schemas);
}

main().catch((err) => { root.textContent = `could not load openapi.json: ${err}`; });
