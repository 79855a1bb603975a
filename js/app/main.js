// Placeholder entry of the browser guest app (replaced by the browser app's
// implementation). It imports the client core so the bundle exercises the build.
import { parseJoinLink } from "../core/index.js";

globalThis.ctJoin = { parseJoinLink };
