// Documents on the page: the format, a file opened or dropped, the glossary editor (kept in localStorage), the
// context box, a progress bar by segments, "Detected: …" for auto, and Download in the document's own format.
// Text from files and from the model only ever goes into the page through textContent and form values.

const GLOSSARY_KEY = "hmt-stream.glossary";
const FORMAT_OF = { txt: "text", text: "text", md: "markdown", markdown: "markdown", html: "html", htm: "html" };
const EXTENSION = { text: "txt", markdown: "md", html: "html" };
const MIME = { text: "text/plain", markdown: "text/markdown", html: "text/html" };

const $ = (id) => document.getElementById(id);

function loadGlossary() {
  try {
    const items = JSON.parse(localStorage.getItem(GLOSSARY_KEY));
    return Array.isArray(items) ? items.filter((item) => item && typeof item.source === "string") : [];
  } catch {
    return [];
  }
}

function saveGlossary(items) {
  try {
    localStorage.setItem(GLOSSARY_KEY, JSON.stringify(items));
  } catch {
    // storage full or disabled: the glossary still works for this visit
  }
}

export class DocumentPanel {
  constructor() {
    this.ui = {
      input: $("input"), format: $("format"), file: $("file"), glossary: $("glossary"),
      glossaryAdd: $("glossary-add"), context: $("context"), progressRow: $("progress-row"),
      progress: $("progress"), progressText: $("progress-text"), detected: $("detected"), download: $("download"),
    };
    this.fileName = null;
    this.result = null; // {text, format, target} of the last finished translation
  }

  /** onText() runs after a file replaced the input (the page recounts its characters). */
  wire(onText) {
    const { ui } = this;
    ui.file.addEventListener("change", () => {
      if (ui.file.files.length) this.open(ui.file.files[0], onText);
      ui.file.value = "";
    });
    const pane = ui.input.closest(".pane");
    ui.input.addEventListener("dragover", (event) => {
      event.preventDefault();
      pane.classList.add("dragging");
    });
    ui.input.addEventListener("dragleave", () => pane.classList.remove("dragging"));
    ui.input.addEventListener("drop", (event) => {
      pane.classList.remove("dragging");
      const file = event.dataTransfer && event.dataTransfer.files[0];
      if (!file) return;
      event.preventDefault();
      this.open(file, onText);
    });
    ui.glossaryAdd.addEventListener("click", () => {
      this.addRow({ source: "", target: "" }).querySelector("input").focus();
    });
    ui.download.addEventListener("click", () => this.download());
    for (const item of loadGlossary()) this.addRow(item);
  }

  async open(file, onText) {
    const extension = (file.name.split(".").pop() || "").toLowerCase();
    this.ui.input.value = await file.text();
    this.ui.format.value = FORMAT_OF[extension] || "text";
    this.fileName = file.name;
    onText();
  }

  // -- glossary ---------------------------------------------------------------------------------------------------

  addRow(item) {
    const li = document.createElement("li");
    const source = document.createElement("input");
    const target = document.createElement("input");
    const remove = document.createElement("button");
    source.value = item.source;
    target.value = item.target;
    source.placeholder = "term";
    target.placeholder = "translation";
    source.setAttribute("aria-label", "Term in the source text");
    target.setAttribute("aria-label", "Its translation");
    remove.type = "button";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", "Remove this term");
    remove.addEventListener("click", () => {
      li.remove();
      this.saveRows();
    });
    source.addEventListener("input", () => this.saveRows());
    target.addEventListener("input", () => this.saveRows());
    li.append(source, target, remove);
    this.ui.glossary.append(li);
    return li;
  }

  rows() {
    return [...this.ui.glossary.querySelectorAll("li")].map((li) => {
      const [source, target] = li.querySelectorAll("input");
      return { source: source.value, target: target.value };
    });
  }

  saveRows() {
    saveGlossary(this.rows());
  }

  /** The request's document fields: format, the complete glossary pairs, context. */
  fields() {
    const glossary = this.rows()
      .map((row) => ({ source: row.source.trim(), target: row.target.trim() }))
      .filter((row) => row.source && row.target);
    const fields = {};
    if (this.ui.format.value !== "text") fields.format = this.ui.format.value;
    if (glossary.length) fields.glossary = glossary;
    const context = this.ui.context.value.trim();
    if (context) fields.context = context;
    return fields;
  }

  // -- one translation --------------------------------------------------------------------------------------------

  reset() {
    this.ui.progressRow.hidden = true;
    this.ui.detected.hidden = true;
    this.ui.detected.textContent = "";
    this.ui.download.disabled = true;
    this.result = null;
  }

  started(event, languageName) {
    if (event.source) {
      this.ui.detected.textContent = `Detected: ${languageName(event.source)}`;
      this.ui.detected.hidden = false;
    }
    if (event.segments > 1) this.progress({ done: 0, segments: event.segments });
  }

  progress(event) {
    const { progress, progressText, progressRow } = this.ui;
    progress.max = event.segments;
    progress.value = event.done;
    progressText.textContent = `${event.done} / ${event.segments} segments`;
    progressRow.hidden = false;
  }

  finished(request, text) {
    this.result = { text, format: request.format || "text", target: request.target };
    this.ui.download.disabled = !text;
  }

  download() {
    if (!this.result) return;
    const { text, format, target } = this.result;
    const base = this.fileName ? this.fileName.replace(/\.[^.]*$/, "") : "translation";
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], { type: `${MIME[format]};charset=utf-8` }));
    link.download = `${base}.${target}.${EXTENSION[format]}`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  }
}
