// The editor: one CodeMirror 6 view showing the open file's Y.Text, bound with
// y-codemirror.next (edits, undo per file, remote cursors and selections from awareness).

import { EditorState, Compartment, Transaction } from "@codemirror/state";
import {
  EditorView, keymap, lineNumbers, highlightActiveLineGutter, highlightSpecialChars,
  drawSelection, dropCursor, rectangularSelection, crosshairCursor, highlightActiveLine,
} from "@codemirror/view";
import {
  defaultHighlightStyle, syntaxHighlighting, indentOnInput, bracketMatching, foldGutter, foldKeymap,
} from "@codemirror/language";
import { defaultKeymap, indentWithTab } from "@codemirror/commands";
import { searchKeymap, highlightSelectionMatches } from "@codemirror/search";
import { javascript } from "@codemirror/lang-javascript";
import { python } from "@codemirror/lang-python";
import { java } from "@codemirror/lang-java";
import { css } from "@codemirror/lang-css";
import { html } from "@codemirror/lang-html";
import { json } from "@codemirror/lang-json";
import { markdown } from "@codemirror/lang-markdown";
import { yCollab, yUndoManagerKeymap } from "y-codemirror.next";
import { Y } from "../core/index.js";
import { languageOf } from "./model.js";
import { guardedAwareness } from "./awareness.js";

function languageExtension(path) {
  switch (languageOf(path)) {
    case "javascript": return javascript();
    case "jsx": return javascript({ jsx: true });
    case "typescript": return javascript({ typescript: true });
    case "tsx": return javascript({ typescript: true, jsx: true });
    case "python": return python();
    case "java": return java();
    case "css": return css();
    case "html": return html();
    case "json": return json();
    case "markdown": return markdown();
    default: return [];
  }
}

/** UTF-8 bytes of a document (only computed when it could be over the cap). */
function utf8Bytes(doc, cap) {
  if (doc.length * 3 <= cap) return doc.length; // cannot be over: skip the count
  let bytes = 0;
  for (const line of doc.iterLines()) bytes += new TextEncoder().encode(line).length + 1;
  return bytes - 1;
}

export class Editor {
  /**
   * @param {HTMLElement} parent
   * @param {object} options  {awareness, nonce, onTooLarge(path), onLocalEdit()}
   */
  constructor(parent, { awareness, nonce = null, onTooLarge = () => {}, onLocalEdit = () => {} }) {
    this.awareness = awareness;
    this._guarded = guardedAwareness(awareness);
    this.onTooLarge = onTooLarge;
    this.path = null;
    this.ytext = null;
    this.readOnly = false;
    this.maxFileBytes = Infinity;
    this._undo = new Map(); // path -> Y.UndoManager (history survives switching files)
    this._views = new Map(); // path -> {scrollTop, anchor, head}
    this._readOnly = new Compartment();
    this._nonce = nonce;
    this._onLocalEdit = onLocalEdit;
    this.view = new EditorView({ parent, state: EditorState.create({ doc: "", extensions: this._base(true) }) });
  }

  /** Shows `ytext` as `path` (null: nothing open). */
  open(path, ytext) {
    this._remember();
    this.path = path;
    this.ytext = ytext;
    if (!ytext) {
      this.view.setState(EditorState.create({ doc: "", extensions: this._base(true) }));
      return;
    }
    let undo = this._undo.get(path);
    if (!undo || undo.scope[0] !== ytext) {
      undo?.destroy();
      undo = new Y.UndoManager(ytext);
      this._undo.set(path, undo);
    }
    const saved = this._views.get(path);
    const length = ytext.length;
    const selection = saved ? { anchor: Math.min(saved.anchor, length), head: Math.min(saved.head, length) } : undefined;
    this.view.setState(EditorState.create({
      doc: ytext.toString(),
      selection,
      extensions: [
        ...this._base(false),
        languageExtension(path),
        yCollab(ytext, this._guarded, { undoManager: undo }),
      ],
    }));
    if (saved) this.view.scrollDOM.scrollTop = saved.scrollTop;
  }

  _base(empty) {
    const filter = EditorState.transactionFilter.of((tr) => {
      // Only local edits (remote ones carry no user event) that grow the file past the cap.
      if (!tr.docChanged || !tr.annotation(Transaction.userEvent)) return tr;
      if (tr.newDoc.length <= tr.startState.doc.length) return tr;
      if (utf8Bytes(tr.newDoc, this.maxFileBytes) <= this.maxFileBytes) return tr;
      this.onTooLarge(this.path);
      return [];
    });
    return [
      lineNumbers(), highlightActiveLineGutter(), highlightSpecialChars(), foldGutter(),
      drawSelection(), dropCursor(), EditorState.allowMultipleSelections.of(true), indentOnInput(),
      syntaxHighlighting(defaultHighlightStyle, { fallback: true }), bracketMatching(),
      rectangularSelection(), crosshairCursor(), highlightActiveLine(), highlightSelectionMatches(),
      keymap.of([...yUndoManagerKeymap, ...defaultKeymap, ...searchKeymap, ...foldKeymap, indentWithTab]),
      EditorState.tabSize.of(4),
      this._nonce ? EditorView.cspNonce.of(this._nonce) : [],
      this._readOnly.of(this._readOnlyExtension(empty || this.readOnly)),
      EditorView.updateListener.of((update) => {
        // Typing here (not a remote edit, which carries no user event).
        if (update.transactions.some((tr) => tr.docChanged && tr.annotation(Transaction.userEvent))) this._onLocalEdit();
      }),
      filter,
    ];
  }

  _readOnlyExtension(on) {
    return [EditorState.readOnly.of(on), EditorView.contentAttributes.of({ "aria-readonly": on ? "true" : "false" })];
  }

  setReadOnly(readOnly) {
    this.readOnly = readOnly;
    if (this.ytext) this.view.dispatch({ effects: this._readOnly.reconfigure(this._readOnlyExtension(readOnly)) });
  }

  /** Scrolls to a remote participant's cursor (Y.RelativePosition JSON), when in this file. */
  reveal(cursor) {
    if (!this.ytext || !cursor?.head) return;
    let position;
    try {
      position = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(cursor.head), this.ytext.doc);
    } catch {
      return;
    }
    if (!position || position.type !== this.ytext) return;
    const at = Math.min(position.index, this.view.state.doc.length);
    const rect = this.view.coordsAtPos(at);
    const box = this.view.scrollDOM.getBoundingClientRect();
    if (rect && rect.top >= box.top && rect.bottom <= box.bottom) return; // already visible
    this.view.dispatch({ effects: EditorView.scrollIntoView(at, { y: "center" }) });
  }

  /** Forget a removed file's history. */
  forget(path) {
    this._undo.get(path)?.destroy();
    this._undo.delete(path);
    this._views.delete(path);
  }

  text() {
    return this.view.state.doc.toString();
  }

  focus() {
    this.view.focus();
  }

  _remember() {
    if (!this.path || !this.ytext) return;
    const sel = this.view.state.selection.main;
    this._views.set(this.path, { scrollTop: this.view.scrollDOM.scrollTop, anchor: sel.anchor, head: sel.head });
  }

  destroy() {
    for (const undo of this._undo.values()) undo.destroy();
    this._undo.clear();
    this.view.destroy();
  }
}
