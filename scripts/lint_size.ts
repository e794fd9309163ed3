// A `deno lint` plugin for the project's size rules (../shared/STYLE.md, issue 16): in src/, no
// file over 600 lines and no function over 80. `deno lint` (and so the CI gate) reports both.
const MAX_FUNCTION_LINES = 80;
const MAX_FILE_LINES = 600;

function lineCount(text: string, start: number, end: number): number {
  let n = 1;
  for (let i = start; i < end; i++) if (text.charCodeAt(i) === 10) n++;
  return n;
}

function inSrc(filename: string): boolean {
  return /[\\/]src[\\/]/.test(filename);
}

const plugin: Deno.lint.Plugin = {
  name: "size",
  rules: {
    "max-function-lines": {
      create(ctx) {
        if (!inSrc(ctx.filename)) return {};
        const check = (node: Deno.lint.Node) => {
          const n = lineCount(ctx.sourceCode.text, node.range[0], node.range[1]);
          if (n > MAX_FUNCTION_LINES) {
            ctx.report({ node, message: `A function of ${n} lines (over ${MAX_FUNCTION_LINES})` });
          }
        };
        return {
          FunctionDeclaration: check,
          FunctionExpression: check,
          ArrowFunctionExpression: check,
        };
      },
    },
    "max-file-lines": {
      create(ctx) {
        if (!inSrc(ctx.filename)) return {};
        return {
          Program(node) {
            const n = lineCount(ctx.sourceCode.text, 0, ctx.sourceCode.text.length);
            if (n > MAX_FILE_LINES) {
              ctx.report({
                node,
                range: [0, 1],
                message: `A file of ${n} lines (over ${MAX_FILE_LINES})`,
              });
            }
          },
        };
      },
    },
  },
};

export default plugin;
