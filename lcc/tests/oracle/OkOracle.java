// Runs the OpenKnowledge (OK) LCC parser on many texts in one JVM, for Keel's differential test
// (lcc/tests/ok_diff.rs). Run with Java's source launcher, the OK jars on the class path:
//
//   java -cp lcc-interpreter.jar:ok.jar:log4j-1.2.13.jar:tree.jar OkOracle.java < frames
//
// Input: frames of `<byte length>\n<UTF-8 text>`. Output: one line per frame, in order:
//   ok <normalised tree>      the text parsed
//   err <message>             ParseException or TokenMgrError: OK rejects the text
//   crash <message> <where>   any other throwable: OK's parser failed on the text
// The normalised tree is the S-expression ok_diff.rs builds from Keel's AST:
//   (fw (hdr NAME KIND)... (clause ROLE/N BODY)...)
//   BODY := (then B B) | (or B B) | (out CALL ROLE C) | (in CALL ROLE C) | (role ROLE/N) | (null C)
//   C    := [K ...]  with K a CALL or an operator = < > ==; `and` chains flattened.
//   CALL := NAME/N{ARG ...}, ARG a variable's name, i:INT, f:BITS (the double's IEEE bits in hex)
//           or s (a string: OK keeps escapes unprocessed, so contents are not compared).
import java.io.BufferedInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;

import org.apache.log4j.Level;
import org.apache.log4j.Logger;
import org.apache.log4j.varia.NullAppender;
import org.openk.core.module.interpreter.lcc.ast.DefAgent;
import org.openk.core.module.interpreter.lcc.ast.DefConstraint;
import org.openk.core.module.interpreter.lcc.ast.DefMessage;
import org.openk.core.module.interpreter.lcc.ast.DefMethod;
import org.openk.core.module.interpreter.lcc.ast.DefRole;
import org.openk.core.module.interpreter.lcc.ast.DefRoleSemantics;
import org.openk.core.module.interpreter.lcc.ast.DefVariable;
import org.openk.core.module.interpreter.lcc.gen.ASTparse;
import org.openk.core.module.interpreter.lcc.gen.LCCParser;
import org.openk.core.module.interpreter.lcc.gen.LCCParserTreeConstants;
import org.openk.core.module.interpreter.lcc.gen.SimpleNode;
import org.openk.core.module.interpreter.lcc.impl.InteractionState;
import org.openk.core.module.interpreter.lcc.impl.LCCModelImpl;

public class OkOracle {
    public static void main(String[] args) throws Exception {
        Logger.getRootLogger().removeAllAppenders();
        Logger.getRootLogger().addAppender(new NullAppender());
        Logger.getRootLogger().setLevel(Level.OFF);
        InputStream in = new BufferedInputStream(System.in);
        PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
        while (true) {
            String header = readLine(in);
            if (header == null) break;
            int len = Integer.parseInt(header.trim());
            byte[] buf = in.readNBytes(len);
            String text = new String(buf, StandardCharsets.UTF_8);
            out.println(verdict(text));
            out.flush();
        }
    }

    private static String readLine(InputStream in) throws Exception {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        int c;
        while ((c = in.read()) != -1 && c != '\n') b.write(c);
        if (c == -1 && b.size() == 0) return null;
        return b.toString(StandardCharsets.UTF_8);
    }

    static String verdict(String text) {
        try {
            LCCParser p = new LCCParser(new StringReader(text));
            p.init(new LCCModelImpl(), new InteractionState());
            ASTparse root = p.parse();
            StringBuilder sb = new StringBuilder("ok (fw");
            TreeMap<String, String> hdrs = new TreeMap<>();
            for (DefRoleSemantics rs : p.getRoleSemantics().values()) hdrs.put(rs.roleName, rs.type);
            for (var e : hdrs.entrySet()) sb.append(" (hdr ").append(e.getKey()).append(' ').append(e.getValue()).append(')');
            for (int i = 0; i < root.jjtGetNumChildren(); i++) {
                SimpleNode n = (SimpleNode) root.jjtGetChild(i);
                if (n.getID() != LCCParserTreeConstants.JJTCLAUSE) continue;
                DefAgent a = (DefAgent) n.data;
                sb.append(" (clause ").append(role(a.getRole())).append(' ');
                body(sb, (SimpleNode) n.jjtGetChild(0));
                sb.append(')');
            }
            return sb.append(')').toString();
        } catch (Throwable t) {
            String m = String.valueOf(t.getMessage()).replace('\r', ' ').replace('\n', ' ');
            String name = t.getClass().getSimpleName();
            if (name.equals("ParseException") || name.equals("TokenMgrError")) {
                return "err " + name + ": " + m;
            }
            // Anything else is OK failing on a text its grammar took (a crash, not a verdict).
            StringBuilder where = new StringBuilder();
            StackTraceElement[] st = t.getStackTrace();
            for (int i = 0; i < Math.min(3, st.length); i++) where.append(" at ").append(st[i]);
            return "crash " + name + ": " + m + where;
        }
    }

    static String role(DefRole r) {
        List<?> args = r.getArguments();
        return r.getName() + "/" + (args == null ? 0 : args.size());
    }

    static String arity(DefMethod m) {
        List<?> args = m.getArguments();
        return m.getName() + "/" + (args == null ? 0 : args.size());
    }

    /** `name/N{a1 a2 ...}`: each argument a variable's name, i:INT, f:BITS (IEEE, hex) or s. */
    static String call(DefMethod m) {
        List<DefVariable> args = m.getArguments();
        StringBuilder sb = new StringBuilder(arity(m)).append('{');
        if (args != null) {
            for (int i = 0; i < args.size(); i++) {
                if (i > 0) sb.append(' ');
                Object v = args.get(i).getValue();
                if (v == null) sb.append(args.get(i).getName());
                else if (v instanceof Integer) sb.append("i:").append(v);
                else if (v instanceof Double) sb.append("f:").append(Long.toHexString(Double.doubleToLongBits((Double) v)));
                else if (v instanceof String) sb.append("s");
                else sb.append("?").append(v.getClass().getSimpleName());
            }
        }
        return sb.append('}').toString();
    }

    static String agentRole(DefAgent a) {
        return a.isWildcard() ? "_" : a.getRole().getName();
    }

    static void body(StringBuilder sb, SimpleNode n) {
        switch (n.getID()) {
            case LCCParserTreeConstants.JJTTHEN:
            case LCCParserTreeConstants.JJTOR: {
                sb.append(n.getID() == LCCParserTreeConstants.JJTTHEN ? "(then " : "(or ");
                body(sb, (SimpleNode) n.jjtGetChild(0));
                sb.append(' ');
                body(sb, (SimpleNode) n.jjtGetChild(1));
                sb.append(')');
                break;
            }
            case LCCParserTreeConstants.JJTMESSAGEIN:
            case LCCParserTreeConstants.JJTMESSAGEOUT: {
                boolean out = n.getID() == LCCParserTreeConstants.JJTMESSAGEOUT;
                DefMessage m = (DefMessage) n.data;
                sb.append(out ? "(out " : "(in ").append(call(m)).append(' ')
                  .append(agentRole(out ? m.recipient : m.sender)).append(' ');
                constraints(sb, n);
                sb.append(')');
                break;
            }
            case LCCParserTreeConstants.JJTNEWROLE:
                sb.append("(role ").append(role(((DefAgent) n.data).getRole())).append(')');
                break;
            case LCCParserTreeConstants.JJTNULLOP:
                sb.append("(null ");
                constraints(sb, n);
                sb.append(')');
                break;
            default:
                sb.append("(?").append(LCCParserTreeConstants.jjtNodeName[n.getID()]).append(')');
        }
    }

    static void constraints(StringBuilder sb, SimpleNode n) {
        List<String> ks = new ArrayList<>();
        for (int i = 0; i < n.jjtGetNumChildren(); i++) flatten(ks, (SimpleNode) n.jjtGetChild(i));
        sb.append('[').append(String.join(" ", ks)).append(']');
    }

    static void flatten(List<String> ks, SimpleNode n) {
        if (n.getID() == LCCParserTreeConstants.JJTAND) {
            for (int i = 0; i < n.jjtGetNumChildren(); i++) flatten(ks, (SimpleNode) n.jjtGetChild(i));
            return;
        }
        DefConstraint c = (DefConstraint) n.data;
        switch (c.getType()) {
            case DefConstraint.METHOD_CALL: ks.add(call(c.getMethod())); break;
            case DefConstraint.LESS_THAN: ks.add("<"); break;
            case DefConstraint.GREATER_THAN: ks.add(">"); break;
            case DefConstraint.EQUAL_TO: ks.add("=="); break;
            default: ks.add("=");
        }
    }
}
