from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'report.html.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_csp = resolve('csp')
    l_0_verdict = resolve('verdict')
    l_0_doc = resolve('doc')
    l_0_generated = resolve('generated')
    l_0_counts = resolve('counts')
    l_0_top = resolve('top')
    l_0_findings = resolve('findings')
    l_0_left_out = resolve('left_out')
    l_0_studies = resolve('studies')
    l_0_figure_mb = resolve('figure_mb')
    l_0_nav_studies = resolve('nav_studies')
    l_0_listed = resolve('listed')
    l_0_folded = resolve('folded')
    l_0_orphans = resolve('orphans')
    l_0_runs = resolve('runs')
    l_0_script = resolve('script')
    l_0_sev_label = l_0_sev = l_0_recommendation = l_0_figure = l_0_finding_rows = l_0_card = missing
    try:
        t_1 = environment.filters['format']
    except KeyError:
        @internalcode
        def t_1(*unused):
            raise TemplateRuntimeError("No filter named 'format' found.")
    try:
        t_2 = environment.filters['join']
    except KeyError:
        @internalcode
        def t_2(*unused):
            raise TemplateRuntimeError("No filter named 'join' found.")
    try:
        t_3 = environment.filters['length']
    except KeyError:
        @internalcode
        def t_3(*unused):
            raise TemplateRuntimeError("No filter named 'length' found.")
    try:
        t_4 = environment.filters['replace']
    except KeyError:
        @internalcode
        def t_4(*unused):
            raise TemplateRuntimeError("No filter named 'replace' found.")
    try:
        t_5 = environment.filters['safe']
    except KeyError:
        @internalcode
        def t_5(*unused):
            raise TemplateRuntimeError("No filter named 'safe' found.")
    try:
        t_6 = environment.tests['none']
    except KeyError:
        @internalcode
        def t_6(*unused):
            raise TemplateRuntimeError("No test named 'none' found.")
    pass
    def macro(l_1_s, l_1_n):
        t_7 = []
        if l_1_s is missing:
            l_1_s = undefined("parameter 's' was not provided", name='s')
        if l_1_n is missing:
            l_1_n = undefined("parameter 'n' was not provided", name='n')
        pass
        t_7.extend((
            '<span class="count ',
            escape(l_1_s),
            '">',
            escape(l_1_n),
            ' ',
            escape(l_1_s),
            escape(('s' if (l_1_n != 1) else cond_expr_undefined("the inline if-expression on line 1 in 'report.html.j2' evaluated to false and no else section was defined."))),
            '</span>',
        ))
        return concat(t_7)
    context.exported_vars.add('sev_label')
    context.vars['sev_label'] = l_0_sev_label = Macro(environment, macro, 'sev_label', ('s', 'n'), False, False, False, context.eval_ctx.autoescape)
    def macro(l_1_s):
        t_8 = []
        if l_1_s is missing:
            l_1_s = undefined("parameter 's' was not provided", name='s')
        pass
        t_8.extend((
            '<span class="sev ',
            escape(environment.getattr(l_1_s, 'value')),
            '">',
            escape(environment.getattr(l_1_s, 'value')),
            '</span>',
        ))
        return concat(t_8)
    context.exported_vars.add('sev')
    context.vars['sev'] = l_0_sev = Macro(environment, macro, 'sev', ('s',), False, False, False, context.eval_ctx.autoescape)
    def macro(l_1_v):
        t_9 = []
        l_1_r = missing
        if l_1_v is missing:
            l_1_v = undefined("parameter 'v' was not provided", name='v')
        pass
        l_1_r = environment.getattr(environment.getattr(l_1_v, 'finding'), 'recommendation')
        if (undefined(name='r') if l_1_r is missing else l_1_r):
            pass
            t_9.extend((
                '<div class="fix">\n<div class="fix-head">Change: <strong>',
                escape(t_4(context.eval_ctx, environment.getattr((undefined(name='r') if l_1_r is missing else l_1_r), 'action'), '_', ' ')),
                '</strong>',
            ))
            if environment.getattr((undefined(name='r') if l_1_r is missing else l_1_r), 'why'):
                pass
                t_9.extend((
                    ' &mdash; ',
                    escape(environment.getattr((undefined(name='r') if l_1_r is missing else l_1_r), 'why')),
                ))
            t_9.append(
                '</div>\n',
            )
            if environment.getattr(l_1_v, 'snippet'):
                pass
                t_9.extend((
                    '<div class="snippet-row"><pre class="snippet">',
                    escape(environment.getattr(l_1_v, 'snippet')),
                    '</pre></div>',
                ))
            t_9.append(
                '</div>\n',
            )
        return concat(t_9)
    context.exported_vars.add('recommendation')
    context.vars['recommendation'] = l_0_recommendation = Macro(environment, macro, 'recommendation', ('v',), False, False, False, context.eval_ctx.autoescape)
    def macro(l_1_anchor, l_1_plot):
        t_10 = []
        if l_1_anchor is missing:
            l_1_anchor = undefined("parameter 'anchor' was not provided", name='anchor')
        if l_1_plot is missing:
            l_1_plot = undefined("parameter 'plot' was not provided", name='plot')
        pass
        t_10.extend((
            '<figure id="',
            escape(l_1_anchor),
            '">\n<figcaption><strong>',
            escape(environment.getattr(l_1_plot, 'title')),
            '.</strong> ',
            escape(environment.getattr(l_1_plot, 'caption')),
            '</figcaption>\n<img src="',
            escape(environment.getattr(l_1_plot, 'uri')),
            '" width="',
            escape(environment.getattr(l_1_plot, 'width')),
            '" height="',
            escape(environment.getattr(l_1_plot, 'height')),
            '" alt="',
            escape(environment.getattr(l_1_plot, 'title')),
            '">\n</figure>\n',
        ))
        return concat(t_10)
    context.exported_vars.add('figure')
    context.vars['figure'] = l_0_figure = Macro(environment, macro, 'figure', ('anchor', 'plot'), False, False, False, context.eval_ctx.autoescape)
    def macro(l_1_views):
        t_11 = []
        if l_1_views is missing:
            l_1_views = undefined("parameter 'views' was not provided", name='views')
        pass
        t_11.append(
            '<tr><th>severity</th><th>finding</th><th>check</th><th>where</th><th>steps</th></tr>\n',
        )
        for l_2_v in l_1_views:
            l_2_steps_text = resolve('steps_text')
            l_2_f = missing
            _loop_vars = {}
            pass
            l_2_f = environment.getattr(l_2_v, 'finding')
            _loop_vars['f'] = l_2_f
            t_11.extend((
                '<tr><td>',
                escape(context.call((undefined(name='sev') if l_0_sev is missing else l_0_sev), environment.getattr((undefined(name='f') if l_2_f is missing else l_2_f), 'severity'), _loop_vars=_loop_vars)),
                '</td><td><a href="#',
                escape(environment.getattr(l_2_v, 'anchor')),
                '">',
                escape(environment.getattr((undefined(name='f') if l_2_f is missing else l_2_f), 'title')),
                '</a></td><td><code>',
                escape(environment.getattr((undefined(name='f') if l_2_f is missing else l_2_f), 'check')),
                '</code></td><td>',
                escape(environment.getattr(l_2_v, 'where')),
                '</td><td class="num">',
            ))
            if environment.getattr((undefined(name='f') if l_2_f is missing else l_2_f), 'steps'):
                pass
                t_11.append(
                    escape(context.call((undefined(name='steps_text') if l_2_steps_text is missing else l_2_steps_text), environment.getattr((undefined(name='f') if l_2_f is missing else l_2_f), 'steps'), '', _loop_vars=_loop_vars)),
                )
            t_11.append(
                '</td></tr>\n',
            )
        l_2_v = l_2_f = l_2_steps_text = missing
        return concat(t_11)
    context.exported_vars.add('finding_rows')
    context.vars['finding_rows'] = l_0_finding_rows = Macro(environment, macro, 'finding_rows', ('views',), False, False, False, context.eval_ctx.autoescape)
    def macro(l_1_v):
        t_12 = []
        l_1_steps_text = resolve('steps_text')
        l_1_f = missing
        if l_1_v is missing:
            l_1_v = undefined("parameter 'v' was not provided", name='v')
        pass
        l_1_f = environment.getattr(l_1_v, 'finding')
        t_12.extend((
            '<article class="finding ',
            escape(environment.getattr(environment.getattr((undefined(name='f') if l_1_f is missing else l_1_f), 'severity'), 'value')),
            '" id="',
            escape(environment.getattr(l_1_v, 'anchor')),
            '">\n<h4>',
            escape(context.call((undefined(name='sev') if l_0_sev is missing else l_0_sev), environment.getattr((undefined(name='f') if l_1_f is missing else l_1_f), 'severity'))),
            ' ',
            escape(environment.getattr((undefined(name='f') if l_1_f is missing else l_1_f), 'title')),
            '</h4>\n<p class="where"><code>',
            escape(environment.getattr((undefined(name='f') if l_1_f is missing else l_1_f), 'check')),
            '</code> &middot; ',
            escape(environment.getattr(l_1_v, 'where')),
        ))
        if environment.getattr((undefined(name='f') if l_1_f is missing else l_1_f), 'steps'):
            pass
            t_12.extend((
                ' &middot; ',
                escape(context.call((undefined(name='steps_text') if l_1_steps_text is missing else l_1_steps_text), environment.getattr((undefined(name='f') if l_1_f is missing else l_1_f), 'steps'))),
            ))
        t_12.extend((
            '</p>\n<p>',
            escape(environment.getattr((undefined(name='f') if l_1_f is missing else l_1_f), 'detail')),
            '</p>\n',
            escape(context.call((undefined(name='recommendation') if l_0_recommendation is missing else l_0_recommendation), l_1_v)),
            '\n',
        ))
        if environment.getattr(l_1_v, 'plot'):
            pass
            t_12.append(
                escape(context.call((undefined(name='figure') if l_0_figure is missing else l_0_figure), markup_join((environment.getattr(l_1_v, 'anchor'), '-plot', )), environment.getattr(l_1_v, 'plot'))),
            )
        if environment.getattr(l_1_v, 'see'):
            pass
            t_12.extend((
                '<p class="note">Evidence: <a href="#',
                escape(environment.getitem(environment.getattr(l_1_v, 'see'), 0)),
                '">',
                escape(environment.getitem(environment.getattr(l_1_v, 'see'), 1)),
                '</a> above.</p>',
            ))
        if environment.getattr(l_1_v, 'note'):
            pass
            t_12.extend((
                '<p class="note">',
                escape(environment.getattr(l_1_v, 'note')),
                '</p>',
            ))
        t_12.append(
            '</article>\n',
        )
        return concat(t_12)
    context.exported_vars.add('card')
    context.vars['card'] = l_0_card = Macro(environment, macro, 'card', ('v',), False, False, False, context.eval_ctx.autoescape)
    yield '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<meta http-equiv="Content-Security-Policy" content="'
    yield escape((undefined(name='csp') if l_0_csp is missing else l_0_csp))
    yield '">\n<meta name="viewport" content="width=device-width, initial-scale=1">\n<meta name="referrer" content="no-referrer">\n<title>diagnose: '
    yield escape((undefined(name='verdict') if l_0_verdict is missing else l_0_verdict))
    yield ' &middot; '
    yield escape(environment.getattr((undefined(name='doc') if l_0_doc is missing else l_0_doc), 'root'))
    yield '</title>\n<style>\n:root { --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; }\n* { box-sizing: border-box; }\nbody { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1040px; padding: 1.2em 1.5em 4em; color: #1f2328; }\nh1 { font-size: 1.35em; margin: 0; }\nh1 .root { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-weight: 600; word-break: break-all; }\nh2 { font-size: 1.2em; margin: 2.2em 0 .6em; border-bottom: 1px solid var(--line); padding-bottom: .25em; }\nh3 { font-size: 1.05em; margin: 1.6em 0 .4em; }\nh4 { font-size: 1em; margin: 0 0 .2em; }\na { color: #0969da; }\n.meta { color: var(--muted); margin: .3em 0 0; }\n.counts { display: flex; flex-wrap: wrap; gap: .4em 1.4em; margin: .8em 0 0; padding: 0; list-style: none; }\n.counts b { font-size: 1.15em; }\n.verdict { font-size: 1.25em; font-weight: 650; padding: .55em .9em; border-radius: 8px; margin: .9em 0 .6em; border: 1px solid; }\n.verdict.healthy { background: #dafbe1; color: #116329; border-color: #aceebb; }\n.verdict.warnings { background: #fff8c5; color: #7d4e00; border-color: #f0d77d; }\n.verdict.errors { background: #ffebe9; color: #a40e26; border-color: #ffcecb; }\n.verdict small { font-weight: 400; font-size: .75em; color: #1f2328; margin-left: .6em; }\n.top { display: grid; gap: .5em; }\n.finding { border: 1px solid var(--line); border-left: 5px solid #8c959f; border-radius: 6px; padding: .5em .9em; margin: .6em 0; background: #fff; }\n.top .finding { margin: 0; }\n.finding.error { border-left-color: #cf222e; } .finding.warning { border-left-color: #d4a72c; } .finding.info { border-left-color: #0969da; }\n.finding p { margin: .25em 0; }\n.where { color: var(--muted); font-size: .92em; }\n.sev { display: inline-block; font-size: .72em; font-weight: 700; text-transform: uppercase; letter-spacing: .03em; padding: .05em .45em; border-radius: 4px; vertical-align: .12em; margin-right: .3em; color: #fff; }\n.sev.error { background: #cf222e; } .sev.warning { background: #9a6700; } .sev.info { background: #0969da; }\n.fix { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: .45em .7em; margin: .4em 0; display: grid; grid-template-columns: minmax(0, 1fr) auto; gap: .2em 1em; align-items: start; }\n.fix-head { font-size: .95em; }\npre, code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .9em; }\n.snippet-row { display: flex; align-items: flex-start; gap: .5em; }\npre.snippet { background: #fff; border: 1px solid var(--line); border-radius: 4px; padding: .4em .8em; margin: 0; min-width: 16em; overflow-x: auto; }\nbutton.copy { font-size: .8em; padding: .15em .7em; border: 1px solid var(--line); border-radius: 4px; background: #fff; cursor: pointer; }\ntable { border-collapse: collapse; width: 100%; margin: .4em 0; }\nth, td { text-align: left; padding: .3em .55em; border-bottom: 1px solid #e6eaef; vertical-align: top; }\nth { background: var(--soft); font-weight: 600; }\ntd.num { text-align: right; font-variant-numeric: tabular-nums; }\nfigure { margin: 1em 0; }\nfigure img { max-width: 100%; height: auto; display: block; }\nfigcaption { color: var(--muted); font-size: .92em; margin-bottom: .3em; }\nfigcaption strong { color: #1f2328; }\n.facts { color: var(--muted); margin: 0 0 .4em; }\n.note { color: var(--muted); font-size: .92em; }\nnav { font-size: .92em; margin: .4em 0; }\nnav a { margin-right: .9em; }\ndetails > summary { cursor: pointer; color: #0969da; }\n.more { margin: .4em 0 0; }\ntable.overview { margin-top: 1em; }\n.count.error { color: #cf222e; font-weight: 600; } .count.warning { color: #9a6700; font-weight: 600; } .count.info { color: #0969da; }\n.ok { color: #1a7f37; }\n</style>\n</head>\n<body>\n<header>\n<h1>Training health of <span class="root">'
    yield escape(environment.getattr((undefined(name='doc') if l_0_doc is missing else l_0_doc), 'root'))
    yield '</span></h1>\n<p class="meta">'
    yield escape((undefined(name='generated') if l_0_generated is missing else l_0_generated))
    yield ' &middot; diagnose '
    yield escape(environment.getattr((undefined(name='doc') if l_0_doc is missing else l_0_doc), 'tool_version'))
    yield '</p>\n<ul class="counts">\n<li><b>'
    yield escape(environment.getattr((undefined(name='counts') if l_0_counts is missing else l_0_counts), 'studies'))
    yield '</b> stud'
    yield escape(('ies' if (environment.getattr((undefined(name='counts') if l_0_counts is missing else l_0_counts), 'studies') != 1) else 'y'))
    yield '</li>\n<li><b>'
    yield escape(environment.getattr((undefined(name='counts') if l_0_counts is missing else l_0_counts), 'runs'))
    yield '</b> run'
    yield escape(('s' if (environment.getattr((undefined(name='counts') if l_0_counts is missing else l_0_counts), 'runs') != 1) else cond_expr_undefined("the inline if-expression on line 102 in 'report.html.j2' evaluated to false and no else section was defined.")))
    yield '</li>\n<li><b>'
    yield escape(context.call(environment.getattr('{:,}', 'format'), environment.getattr((undefined(name='counts') if l_0_counts is missing else l_0_counts), 'steps')))
    yield '</b> logged steps</li>\n'
    if environment.getattr((undefined(name='counts') if l_0_counts is missing else l_0_counts), 'unreadable'):
        pass
        yield '<li><a href="#unreadable"><b>'
        yield escape(environment.getattr((undefined(name='counts') if l_0_counts is missing else l_0_counts), 'unreadable'))
        yield '</b> unreadable</a></li>'
    yield '</ul>\n</header>\n\n<div class="verdict '
    yield escape((undefined(name='verdict') if l_0_verdict is missing else l_0_verdict))
    yield '" role="status">\n'
    if ((undefined(name='verdict') if l_0_verdict is missing else l_0_verdict) == 'healthy'):
        pass
        yield 'Healthy: no check found a problem.'
        if environment.getattr((undefined(name='counts') if l_0_counts is missing else l_0_counts), 'infos'):
            pass
            yield '<small>'
            yield escape(environment.getattr((undefined(name='counts') if l_0_counts is missing else l_0_counts), 'infos'))
            yield ' note'
            yield escape(('s' if (environment.getattr((undefined(name='counts') if l_0_counts is missing else l_0_counts), 'infos') != 1) else cond_expr_undefined("the inline if-expression on line 109 in 'report.html.j2' evaluated to false and no else section was defined.")))
            yield ' below</small>'
    elif ((undefined(name='verdict') if l_0_verdict is missing else l_0_verdict) == 'warnings'):
        pass
        yield 'Warnings: '
        yield escape(environment.getattr((undefined(name='counts') if l_0_counts is missing else l_0_counts), 'warnings'))
        yield ' thing'
        yield escape(('s' if (environment.getattr((undefined(name='counts') if l_0_counts is missing else l_0_counts), 'warnings') != 1) else cond_expr_undefined("the inline if-expression on line 110 in 'report.html.j2' evaluated to false and no else section was defined.")))
        yield ' to look at.\n'
    else:
        pass
        yield 'Errors: '
        yield escape(environment.getattr((undefined(name='counts') if l_0_counts is missing else l_0_counts), 'errors'))
        yield ' serious problem'
        yield escape(('s' if (environment.getattr((undefined(name='counts') if l_0_counts is missing else l_0_counts), 'errors') != 1) else cond_expr_undefined("the inline if-expression on line 111 in 'report.html.j2' evaluated to false and no else section was defined.")))
        if environment.getattr((undefined(name='counts') if l_0_counts is missing else l_0_counts), 'warnings'):
            pass
            yield ', '
            yield escape(environment.getattr((undefined(name='counts') if l_0_counts is missing else l_0_counts), 'warnings'))
            yield ' warning'
            yield escape(('s' if (environment.getattr((undefined(name='counts') if l_0_counts is missing else l_0_counts), 'warnings') != 1) else cond_expr_undefined("the inline if-expression on line 111 in 'report.html.j2' evaluated to false and no else section was defined.")))
        yield '.\n'
    yield '</div>\n\n'
    if (undefined(name='top') if l_0_top is missing else l_0_top):
        pass
        yield '<section class="top" aria-label="Most important findings">\n'
        for l_1_v in (undefined(name='top') if l_0_top is missing else l_0_top):
            l_1_steps_text = resolve('steps_text')
            l_1_f = missing
            _loop_vars = {}
            pass
            l_1_f = environment.getattr(l_1_v, 'finding')
            _loop_vars['f'] = l_1_f
            yield '<article class="finding '
            yield escape(environment.getattr(environment.getattr((undefined(name='f') if l_1_f is missing else l_1_f), 'severity'), 'value'))
            yield '">\n<h4>'
            yield escape(context.call((undefined(name='sev') if l_0_sev is missing else l_0_sev), environment.getattr((undefined(name='f') if l_1_f is missing else l_1_f), 'severity'), _loop_vars=_loop_vars))
            yield ' <a href="#'
            yield escape(environment.getattr(l_1_v, 'anchor'))
            yield '">'
            yield escape(environment.getattr((undefined(name='f') if l_1_f is missing else l_1_f), 'title'))
            yield '</a></h4>\n<p class="where"><code>'
            yield escape(environment.getattr((undefined(name='f') if l_1_f is missing else l_1_f), 'check'))
            yield '</code> &middot; '
            yield escape(environment.getattr(l_1_v, 'where'))
            if environment.getattr((undefined(name='f') if l_1_f is missing else l_1_f), 'steps'):
                pass
                yield ' &middot; '
                yield escape(context.call((undefined(name='steps_text') if l_1_steps_text is missing else l_1_steps_text), environment.getattr((undefined(name='f') if l_1_f is missing else l_1_f), 'steps'), _loop_vars=_loop_vars))
            yield '</p>\n'
            yield escape(context.call((undefined(name='recommendation') if l_0_recommendation is missing else l_0_recommendation), l_1_v, _loop_vars=_loop_vars))
            yield '\n</article>\n'
        l_1_v = l_1_f = l_1_steps_text = missing
        yield '</section>\n'
        if (t_3((undefined(name='findings') if l_0_findings is missing else l_0_findings)) > t_3((undefined(name='top') if l_0_top is missing else l_0_top))):
            pass
            yield '<p class="more"><a href="#findings">All '
            yield escape(t_3((undefined(name='findings') if l_0_findings is missing else l_0_findings)))
            yield ' findings</a>'
            if environment.getattr((undefined(name='counts') if l_0_counts is missing else l_0_counts), 'infos'):
                pass
                yield ' ('
                yield escape(environment.getattr((undefined(name='counts') if l_0_counts is missing else l_0_counts), 'infos'))
                yield ' informational)'
            yield '</p>'
    yield '\n'
    if (undefined(name='left_out') if l_0_left_out is missing else l_0_left_out):
        pass
        yield '<p id="left-out">Figures are shown for '
        yield escape((t_3((undefined(name='studies') if l_0_studies is missing else l_0_studies)) - t_3((undefined(name='left_out') if l_0_left_out is missing else l_0_left_out))))
        yield ' of '
        yield escape(t_3((undefined(name='studies') if l_0_studies is missing else l_0_studies)))
        yield ' studies, those with the most severe findings first: a page holds up to '
        yield escape((undefined(name='figure_mb') if l_0_figure_mb is missing else l_0_figure_mb))
        yield ' MB of figures, so that a browser opens it. The other '
        yield escape(t_3((undefined(name='left_out') if l_0_left_out is missing else l_0_left_out)))
        yield ' stud'
        yield escape(('ies' if (t_3((undefined(name='left_out') if l_0_left_out is missing else l_0_left_out)) != 1) else 'y'))
        yield ' show'
        yield escape(('s' if (t_3((undefined(name='left_out') if l_0_left_out is missing else l_0_left_out)) == 1) else cond_expr_undefined("the inline if-expression on line 130 in 'report.html.j2' evaluated to false and no else section was defined.")))
        yield ' '
        yield escape(('their' if (t_3((undefined(name='left_out') if l_0_left_out is missing else l_0_left_out)) != 1) else 'its'))
        yield " summary and findings without figures; to see a study's figures, run the report on its folder, e.g. <code>"
        yield escape((environment.getattr(environment.getitem((undefined(name='left_out') if l_0_left_out is missing else l_0_left_out), 0), 'command') or 'diagnose report STUDY_FOLDER'))
        yield '</code>.</p>\n<details class="left-out"><summary>'
        yield escape(t_3((undefined(name='left_out') if l_0_left_out is missing else l_0_left_out)))
        yield ' stud'
        yield escape(('ies' if (t_3((undefined(name='left_out') if l_0_left_out is missing else l_0_left_out)) != 1) else 'y'))
        yield ' without figures</summary>\n<p>'
        l_1_loop = missing
        for l_1_s, l_1_loop in LoopContext((undefined(name='left_out') if l_0_left_out is missing else l_0_left_out), undefined):
            _loop_vars = {}
            pass
            yield '<a href="#'
            yield escape(environment.getattr(l_1_s, 'anchor'))
            yield '">'
            yield escape(environment.getattr(l_1_s, 'name'))
            yield '</a>'
            yield escape((', ' if (not environment.getattr(l_1_loop, 'last')) else cond_expr_undefined("the inline if-expression on line 132 in 'report.html.j2' evaluated to false and no else section was defined.")))
        l_1_loop = l_1_s = missing
        yield '</p>\n</details>\n'
    if (t_3((undefined(name='studies') if l_0_studies is missing else l_0_studies)) > 1):
        pass
        yield '<table class="overview" id="studies" aria-label="Studies">\n<tr><th>study</th><th>runs</th><th>best lr</th><th>unstable lrs</th><th>findings</th></tr>\n'
        l_1_loop = missing
        for l_1_s, l_1_loop in LoopContext((undefined(name='studies') if l_0_studies is missing else l_0_studies), undefined):
            _loop_vars = {}
            pass
            yield '<tr><td><a href="#'
            yield escape(environment.getattr(l_1_s, 'anchor'))
            yield '">'
            yield escape(environment.getattr(l_1_s, 'name'))
            yield '</a>'
            if environment.getattr(l_1_s, 'left_out'):
                pass
                yield ' <span class="note">(no figures)</span>'
            yield '</td><td class="num">'
            yield escape(environment.getattr(l_1_s, 'runs'))
            yield '</td><td class="num">'
            yield escape(environment.getattr(l_1_s, 'best_lr'))
            yield '</td><td>'
            yield escape(environment.getattr(l_1_s, 'unstable'))
            yield '</td><td>'
            l_2_loop = missing
            t_13 = 1
            for (l_2_severity, l_2_n), l_2_loop in LoopContext(environment.getattr(l_1_s, 'tally'), undefined):
                _loop_vars = {}
                pass
                yield escape(context.call((undefined(name='sev_label') if l_0_sev_label is missing else l_0_sev_label), l_2_severity, l_2_n, _loop_vars=_loop_vars))
                yield escape((', ' if (not environment.getattr(l_2_loop, 'last')) else cond_expr_undefined("the inline if-expression on line 138 in 'report.html.j2' evaluated to false and no else section was defined.")))
                t_13 = 0
            l_2_loop = l_2_severity = l_2_n = missing
            if t_13:
                pass
                yield '<span class="ok">none</span>'
            yield '</td></tr>\n'
        l_1_loop = l_1_s = missing
        yield '</table>\n'
    yield '\n<nav aria-label="Contents">'
    if (undefined(name='findings') if l_0_findings is missing else l_0_findings):
        pass
        yield '<a href="#findings">Findings</a>'
    if (t_3((undefined(name='studies') if l_0_studies is missing else l_0_studies)) <= (undefined(name='nav_studies') if l_0_nav_studies is missing else l_0_nav_studies)):
        pass
        for l_1_s in (undefined(name='studies') if l_0_studies is missing else l_0_studies):
            _loop_vars = {}
            pass
            yield '<a href="#'
            yield escape(environment.getattr(l_1_s, 'anchor'))
            yield '">'
            yield escape(environment.getattr(l_1_s, 'name'))
            yield '</a>'
        l_1_s = missing
    else:
        pass
        yield '<a href="#studies">'
        yield escape(t_3((undefined(name='studies') if l_0_studies is missing else l_0_studies)))
        yield ' studies</a>'
    if environment.getattr((undefined(name='doc') if l_0_doc is missing else l_0_doc), 'unreadable'):
        pass
        yield '<a href="#unreadable">Unreadable runs</a>'
    if environment.getattr((undefined(name='doc') if l_0_doc is missing else l_0_doc), 'skipped'):
        pass
        yield '<a href="#skipped">Checks not run</a>'
    yield '<a href="#runs">Runs</a></nav>\n\n'
    if (undefined(name='findings') if l_0_findings is missing else l_0_findings):
        pass
        yield '<h2 id="findings">Findings</h2>\n<table>\n'
        yield escape(context.call((undefined(name='finding_rows') if l_0_finding_rows is missing else l_0_finding_rows), (undefined(name='listed') if l_0_listed is missing else l_0_listed)))
        yield '</table>\n'
        if (undefined(name='folded') if l_0_folded is missing else l_0_folded):
            pass
            yield '<details class="folded"><summary>'
            yield escape(t_3((undefined(name='folded') if l_0_folded is missing else l_0_folded)))
            yield ' informational findings: notes, and the evidence of the findings above (e.g. runs above lr* of a sweep); each also has its card in its study</summary>\n<table>\n'
            yield escape(context.call((undefined(name='finding_rows') if l_0_finding_rows is missing else l_0_finding_rows), (undefined(name='folded') if l_0_folded is missing else l_0_folded)))
            yield '</table>\n</details>\n'
    yield '\n'
    for l_1_s in (undefined(name='studies') if l_0_studies is missing else l_0_studies):
        _loop_vars = {}
        pass
        yield '<h2 id="'
        yield escape(environment.getattr(l_1_s, 'anchor'))
        yield '">Study '
        yield escape(environment.getattr(l_1_s, 'name'))
        yield '</h2>\n<p class="facts">'
        yield escape(t_2(context.eval_ctx, environment.getattr(l_1_s, 'facts'), ' · '))
        yield '</p>\n'
        for (l_2_anchor, l_2_plot) in environment.getattr(l_1_s, 'plots'):
            _loop_vars = {}
            pass
            yield escape(context.call((undefined(name='figure') if l_0_figure is missing else l_0_figure), l_2_anchor, l_2_plot, _loop_vars=_loop_vars))
        l_2_anchor = l_2_plot = missing
        if environment.getattr(l_1_s, 'left_out'):
            pass
            yield '<p class="note">No figures of this study in this page: <a href="#left-out">its '
            yield escape((undefined(name='figure_mb') if l_0_figure_mb is missing else l_0_figure_mb))
            yield ' MB of figures</a> went to the studies whose findings rank first. '
            if environment.getattr(l_1_s, 'command'):
                pass
                yield 'To see them: <code>'
                yield escape(environment.getattr(l_1_s, 'command'))
                yield '</code>'
            else:
                pass
                yield 'To see them, run the report on the folder that holds its runs.'
            yield '</p>\n'
        for l_2_note in environment.getattr(l_1_s, 'notes'):
            _loop_vars = {}
            pass
            yield '<p class="note">'
            yield escape(l_2_note)
            yield '</p>'
        l_2_note = missing
        if environment.getattr(l_1_s, 'findings'):
            pass
            yield '<h3>Findings in '
            yield escape(environment.getattr(l_1_s, 'name'))
            yield '</h3>\n'
            for l_2_v in environment.getattr(l_1_s, 'findings'):
                _loop_vars = {}
                pass
                yield escape(context.call((undefined(name='card') if l_0_card is missing else l_0_card), l_2_v, _loop_vars=_loop_vars))
            l_2_v = missing
        else:
            pass
            yield '<p class="note">No finding in this study.</p>\n'
    l_1_s = missing
    yield '\n'
    if (undefined(name='orphans') if l_0_orphans is missing else l_0_orphans):
        pass
        yield '<h2>Other findings</h2>\n'
        for l_1_v in (undefined(name='orphans') if l_0_orphans is missing else l_0_orphans):
            _loop_vars = {}
            pass
            yield escape(context.call((undefined(name='card') if l_0_card is missing else l_0_card), l_1_v, _loop_vars=_loop_vars))
        l_1_v = missing
    yield '\n'
    if environment.getattr((undefined(name='doc') if l_0_doc is missing else l_0_doc), 'unreadable'):
        pass
        yield '<h2 id="unreadable">Runs that could not be read</h2>\n<table>\n<tr><th>path</th><th>error</th></tr>\n'
        for l_1_u in environment.getattr((undefined(name='doc') if l_0_doc is missing else l_0_doc), 'unreadable'):
            _loop_vars = {}
            pass
            yield '<tr><td><code>'
            yield escape(environment.getattr(l_1_u, 'path'))
            yield '</code></td><td>'
            yield escape(environment.getattr(l_1_u, 'error'))
            yield '</td></tr>\n'
        l_1_u = missing
        yield '</table>\n'
    yield '\n'
    if environment.getattr((undefined(name='doc') if l_0_doc is missing else l_0_doc), 'skipped'):
        pass
        yield '<h2 id="skipped">Checks that could not run</h2>\n<table>\n<tr><th>check</th><th>why</th><th>where</th></tr>\n'
        for l_1_s in environment.getattr((undefined(name='doc') if l_0_doc is missing else l_0_doc), 'skipped'):
            _loop_vars = {}
            pass
            yield '<tr><td><code>'
            yield escape(environment.getattr(l_1_s, 'check'))
            yield '</code></td><td>'
            yield escape(environment.getattr(l_1_s, 'reason'))
            yield '</td><td>'
            yield escape(environment.getattr(l_1_s, 'count'))
            yield ': '
            yield escape(t_2(context.eval_ctx, environment.getattr(l_1_s, 'targets'), ', '))
            if (environment.getattr(l_1_s, 'count') > t_3(environment.getattr(l_1_s, 'targets'))):
                pass
                yield ', &hellip;'
            yield '</td></tr>\n'
        l_1_s = missing
        yield '</table>\n'
    yield '\n<h2 id="runs">Runs</h2>\n<details'
    if (t_3((undefined(name='runs') if l_0_runs is missing else l_0_runs)) <= 12):
        pass
        yield ' open'
    yield '>\n<summary>'
    yield escape(t_3((undefined(name='runs') if l_0_runs is missing else l_0_runs)))
    yield ' run'
    yield escape(('s' if (t_3((undefined(name='runs') if l_0_runs is missing else l_0_runs)) != 1) else cond_expr_undefined("the inline if-expression on line 197 in 'report.html.j2' evaluated to false and no else section was defined.")))
    yield ': study, role, status, steps, lr, momentum, config, logged columns</summary>\n<table>\n<tr><th>study</th><th>run</th><th>role</th><th>status</th><th>steps</th><th>lr</th><th>momentum</th><th>config</th><th>logged</th><th>notes</th></tr>\n'
    l_1_loop = missing
    for l_1_r, l_1_loop in LoopContext((undefined(name='runs') if l_0_runs is missing else l_0_runs), undefined):
        _loop_vars = {}
        pass
        yield '<tr><td>'
        yield escape(environment.getattr(l_1_r, 'study'))
        yield '</td><td>'
        yield escape(environment.getattr(l_1_r, 'name'))
        yield '</td><td>'
        yield escape(environment.getattr(l_1_r, 'role'))
        yield '</td><td>'
        yield escape((environment.getattr(l_1_r, 'status') or ''))
        yield '</td><td class="num">'
        yield escape(environment.getattr(l_1_r, 'steps'))
        yield '</td><td class="num">'
        yield escape((t_1('%g', environment.getattr(l_1_r, 'lr')) if (not t_6(environment.getattr(l_1_r, 'lr'))) else ''))
        yield '</td><td class="num">'
        yield escape((t_1('%g', environment.getattr(l_1_r, 'momentum')) if (not t_6(environment.getattr(l_1_r, 'momentum'))) else ''))
        yield '</td><td class="note">'
        def t_14(fiter):
            for (l_2_key, l_2_value) in fiter:
                if (l_2_key not in ('lr', 'momentum')):
                    yield (l_2_key, l_2_value)
        l_2_loop = missing
        for (l_2_key, l_2_value), l_2_loop in LoopContext(t_14(context.call(environment.getattr((context.call(environment.getattr(l_1_r, 'get'), 'config', _loop_vars=_loop_vars) or {}), 'items'), _loop_vars=_loop_vars)), undefined):
            _loop_vars = {}
            pass
            yield escape(l_2_key)
            yield ': '
            yield escape(l_2_value)
            yield escape((', ' if (not environment.getattr(l_2_loop, 'last')) else cond_expr_undefined("the inline if-expression on line 200 in 'report.html.j2' evaluated to false and no else section was defined.")))
        l_2_loop = l_2_key = l_2_value = missing
        yield '</td><td class="note">'
        yield escape(t_2(context.eval_ctx, (context.call(environment.getattr(l_1_r, 'get'), 'columns', _loop_vars=_loop_vars) or []), ', '))
        yield '</td><td class="note">'
        yield escape(t_2(context.eval_ctx, environment.getattr(l_1_r, 'notes'), '; '))
        yield '</td></tr>\n'
    l_1_loop = l_1_r = missing
    yield '</table>\n</details>\n<script>'
    yield escape(t_5((undefined(name='script') if l_0_script is missing else l_0_script)))
    yield '</script>\n</body>\n</html>'

blocks = {}
debug_info = '1=64&2=84&3=99&4=105&5=106&7=110&8=122&12=135&13=144&14=146&15=150&18=162&20=170&21=175&22=179&25=202&26=209&27=212&28=216&29=220&30=232&31=234&32=237&33=242&34=251&41=265&44=267&98=271&99=273&101=277&102=281&103=285&104=287&108=293&109=295&110=305&111=315&115=326&117=329&118=334&119=337&120=339&121=345&122=353&126=357&129=369&130=372&131=388&132=393&135=404&138=408&143=442&145=468&148=471&149=473&150=476&152=478&157=481&158=485&159=489&160=491&161=496&163=510&164=517&165=520&166=522&172=532&174=535&177=541&181=544&186=555&190=558&196=576&197=580&200=585&204=623'

# Written by `python -m diagnose.render.html` from templates/report.html.j2: do not edit.
CHECKSUM = '9aaa1585a73a20b5633f7ec2641a5a874a9d6536027768cfa5715fa7abb6e180'
